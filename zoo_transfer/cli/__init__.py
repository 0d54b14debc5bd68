"""The `zoo-transfer` command line: one click group, a module per kind of command.

- `catalog`: `list`, `info`, `validate`, `fetch` (the registry; no TensorFlow);
- `train`: `train` and `demo` (the training job);
- `predict`: `predict` and `evaluate` (a trained `.keras` file or a zoo model);
- `rank`: `rank` (which zoo models suit a folder of images, before training);
- `common`: how every command reports a failure.

Commands import TensorFlow only when they run, so `zoo-transfer list` stays fast.

```python
from click.testing import CliRunner
from zoo_transfer.cli import cli
CliRunner().invoke(cli, ["list", "resnet*"]).output
```
"""

from __future__ import annotations

import click

from zoo_transfer.cli.catalog import fetch_cmd, info_cmd, list_cmd, validate_cmd
from zoo_transfer.cli.export import export_cmd
from zoo_transfer.cli.predict import evaluate_cmd, predict_cmd
from zoo_transfer.cli.rank import rank_cmd
from zoo_transfer.cli.train import demo_cmd, train_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zoo-transfer")
def cli() -> None:
    """zoo-transfer: correct transfer learning for Keras, from a verified model zoo."""


for _command in (
    list_cmd,
    info_cmd,
    validate_cmd,
    fetch_cmd,
    predict_cmd,
    evaluate_cmd,
    rank_cmd,
    train_cmd,
    demo_cmd,
    export_cmd,
):
    cli.add_command(_command)


def main() -> None:
    """The `zoo-transfer` console script."""
    cli(prog_name="zoo-transfer")


__all__ = ["cli", "main"]
