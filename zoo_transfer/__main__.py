"""`python -m zoo_transfer` runs the `zoo-transfer` command line."""

from zoo_transfer.cli import main

main()
