"""What every `zoo-transfer` command shares: how a failure is reported."""

from __future__ import annotations

import sys

import click


def fail(message: str, code: int = 2) -> None:
    """Print `Error: message` on stderr and exit with `code` (1: the input or the run
    failed; 2: bad options or arguments, as click does)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)
