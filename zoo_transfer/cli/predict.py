"""`zoo-transfer predict` and `zoo-transfer evaluate`.

Both load Keras only when run, so registering them keeps `zoo-transfer list` TF-free.
"""

from __future__ import annotations

from pathlib import Path

import click

from zoo_transfer.cli.common import fail as _fail
from zoo_transfer.errors import UnknownModelError, ZooTransferError
from zoo_transfer.predict import TTA_CHOICES

FORMAT = click.Choice(["table", "json"])
TTA = click.Choice(TTA_CHOICES)
TTA_HELP = (
    "Test-time augmentation: average over the image and its mirror image (flip), its "
    "centre crop zoomed by the card's crop_pct (crop), or all four views. The training "
    "report measures each on the validation images."
)
WEIGHTS_HELP = (
    "For a zoo name: a weights file (.h5, .weights.h5) instead of the Keras ImageNet cache "
    "(offline machines)."
)


def _load(model: str, weights: Path | None):
    from zoo_transfer.cli._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    from zoo_transfer.model_file import load_for_inference

    return load_for_inference(model, weights=weights)


@click.command("predict")
@click.argument("model")
@click.argument(
    "images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--format", "fmt", type=FORMAT, default="table", show_default=True)
@click.option("--weights", type=click.Path(exists=True, path_type=Path), help=WEIGHTS_HELP)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--tta", type=TTA, default="none", show_default=True, help=TTA_HELP)
def predict_cmd(
    model: str,
    images: tuple[Path, ...],
    top_k: int,
    fmt: str,
    weights: Path | None,
    batch_size: int,
    tta: str,
) -> None:
    """Top classes of IMAGES by MODEL (a .keras file or a zoo name with ImageNet classes).

    An image that cannot be read is reported (in the output and on stderr) and the others
    are predicted; the exit status is then 1.

    JSON output: a list of {"path", "top": [{"rank", "class", "index", "probability"}]},
    with "error" (and an empty "top") for an image that could not be read.
    """
    from zoo_transfer.predict import predict_files, predictions_json, predictions_table

    try:
        loaded = _load(model, weights)
        preds = predict_files(
            loaded.model, images, class_names=loaded.class_names, image_size=loaded.image_size,
            input_spec=loaded.input_spec, top_k=top_k, batch_size=batch_size, errors="report",
            tta=tta,
        )  # fmt: skip
    except UnknownModelError as exc:
        _fail(f"{exc} Or pass the path of a .keras file.", 2)
    except ZooTransferError as exc:
        _fail(str(exc), 1)
    click.echo(predictions_json(preds) if fmt == "json" else predictions_table(preds))
    failed = [p for p in preds if p.error is not None]
    if failed:
        click.echo(
            f"Error: {len(failed)} of {len(preds)} images could not be read and were not "
            "predicted: " + "; ".join(p.error for p in failed[:5])
            + (" ..." if len(failed) > 5 else ""),
            err=True,
        )  # fmt: skip
        raise SystemExit(1)


@click.command("evaluate")
@click.argument("model")
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder with one subfolder per class, named after the model's labels.",
)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--format", "fmt", type=FORMAT, default="table", show_default=True)
@click.option("--weights", type=click.Path(exists=True, path_type=Path), help=WEIGHTS_HELP)
@click.option("--tta", type=TTA, default="none", show_default=True, help=TTA_HELP)
def evaluate_cmd(
    model: str, data: Path, batch_size: int, fmt: str, weights: Path | None, tta: str
) -> None:
    """Accuracy, per-class precision/recall and confusion matrix of MODEL on --data.

    JSON output: {"accuracy", "num_samples", "classes": [{"name", "precision", "recall",
    "support"}], "confusion_matrix" (rows true, columns predicted), "misclassified",
    "samples": [{"item", "true", "true_index", "predicted", "predicted_index",
    "probability", "correct"}]}.
    """
    from zoo_transfer.evaluate import evaluate, image_folder

    try:
        loaded = _load(model, weights)
        names = loaded.class_names
        result = evaluate(
            loaded.model, image_folder(data, names), names, batch_size=batch_size,
            image_size=loaded.image_size, input_spec=loaded.input_spec, tta=tta,
        )  # fmt: skip
    except UnknownModelError as exc:
        _fail(f"{exc} Or pass the path of a .keras file.", 2)
    except ZooTransferError as exc:
        _fail(str(exc), 1)
    click.echo(result.to_json() if fmt == "json" else result.to_table())
