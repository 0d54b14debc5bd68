"""`zoo-transfer export`: a trained `.keras` file as SavedModel, ONNX, LiteRT or TF.js.

TensorFlow is imported only when the command runs, so `zoo-transfer list` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from zoo_transfer.cli._quiet import import_tensorflow_quietly
from zoo_transfer.cli.common import fail as _fail
from zoo_transfer.errors import (
    ArgumentError,
    MissingExtraError,
    OutputFolderError,
    ZooTransferError,
)

FORMATS = ("saved_model", "onnx", "litert", "tfjs")  # zoo_transfer.exports.FORMATS


@click.command("export")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS), help="Target format.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to create: the model, labels.txt and export.json.",
)
@click.option(
    "--quantize",
    type=click.Choice(["dynamic", "float16"]),
    help="LiteRT only: post-training quantization (dynamic: int8 weights, about 4x "
    "smaller; float16: about 2x smaller).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an earlier export in --out (never a folder holding other files).",
)
def export_cmd(model: Path, fmt: str, out: Path, quantize: str | None, overwrite: bool) -> None:
    """Export MODEL (a .keras file from `zoo-transfer train`) for deployment.

    The export takes raw RGB 0-255 images at the model's side (normalisation inside) and
    carries the class names (labels.txt, export.json). Before --out is written, the
    export runs in its own runtime and its outputs are compared with the Keras model's.

    \b
    zoo-transfer export run/final.keras --format onnx --out deploy/onnx
    zoo-transfer export run/final.keras --format litert --quantize dynamic --out deploy/tflite
    """
    if quantize is not None and fmt != "litert":
        _fail(f"--quantize applies to --format litert only (received --format {fmt}).")
    if not model.is_file():
        _fail(f"{model} does not exist. Pass the .keras file a run wrote, e.g. run/final.keras.")
    from zoo_transfer.exports import check_out, check_runtime

    try:  # before TensorFlow loads: a bad --out or a missing package fails in a second
        check_out(out, overwrite)
        check_runtime(fmt)
    except (OutputFolderError, MissingExtraError) as exc:
        _fail(str(exc), 1)
    import_tensorflow_quietly()
    from zoo_transfer.exports import export

    try:
        result = export(model, out, fmt, quantize=quantize, overwrite=overwrite)
    except ArgumentError as exc:
        _fail(str(exc), 2)
    except ZooTransferError as exc:
        _fail(str(exc), 1)
    size = result.size_bytes / 2**20
    click.echo(
        f"Exported {model} as {fmt}{f' ({quantize})' if quantize else ''} to {out} "
        f"({size:.1f} MiB): {len(result.class_names)} classes, input "
        f"{result.side}x{result.side} RGB 0-255."
    )
    click.echo(
        f"Checked in its runtime on {result.checked} images: max difference "
        f"{result.max_difference:.2g}, same top class on {result.top1_agreement:.0%}."
    )
    for note in result.notes:
        click.echo(note)
