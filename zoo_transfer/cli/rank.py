"""`zoo-transfer rank`: which zoo models suit a folder of labelled images, before training.

TensorFlow is imported only when the command runs, so `zoo-transfer list` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zoo_transfer.cli._quiet import import_tensorflow_quietly
from zoo_transfer.cli.common import fail as _fail
from zoo_transfer.errors import ArgumentError, UnknownModelError, ZooTransferError

FORMAT = click.Choice(["table", "json"])
_NAMED_WEIGHTS = {"imagenet": "imagenet", "none": None, "random": None}


def parse_weights(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`("NAME=FILE", ...)` -> `{NAME: FILE}`; FILE `imagenet`, or `none` for random weights.

    ```python
    parse_weights(("mobilenet.a025_224=mn.weights.h5",))   # {'mobilenet.a025_224': 'mn...'}
    ```
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ArgumentError(
                f"Expected --weights NAME=FILE (e.g. mobilenet.a025_224=mn.weights.h5; FILE "
                f"may be imagenet, or none for random weights). Received: {pair!r}"
            )
        value = value.strip()
        out[name.strip()] = _NAMED_WEIGHTS.get(value.lower(), value)
    return out


@click.command("rank")
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder with one subfolder per class (every image is scored; give one split).",
)
@click.option(
    "--models",
    "models",
    help="Comma-separated names or patterns, e.g. 'mobilenet*,digitnet' (default: the "
    "models named in --weights).",
)
@click.option(
    "--weights",
    "weights",
    multiple=True,
    metavar="NAME=FILE",
    help="A model's weights file (offline machines); FILE may be imagenet, or none for "
    "random weights. Repeat for several models. Others use the Keras ImageNet cache.",
)
@click.option(
    "--image-size", type=click.IntRange(min=1), help="Side in pixels (default: each card's)."
)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--stages",
    is_flag=True,
    help="Also fit a converged linear probe on each stage's pooled features and report "
    "the held-out accuracy by stage.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --stages: write the accuracy by stage as a PNG here.",
)
@click.option(
    "--controls",
    is_flag=True,
    help="Rank a random-weight copy of each model beside it: a model that does not beat "
    "its control has nothing to transfer.",
)
@click.option(
    "--features",
    type=click.Choice(["head", "trunk"]),
    default="head",
    show_default=True,
    help="What LogME scores: head, the features train's default head reads (the last "
    "three stages, average and max pooled); trunk, the feature layer's average pool.",
)
@click.option(
    "--standardize/--raw",
    default=True,
    show_default=True,
    help="Score each feature centred and scaled to unit variance, as train's probe fits "
    "them (default), or the features as they are (--raw, as in the LogME paper).",
)
@click.option("--format", "fmt", type=FORMAT, default="table", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress line on stderr.")
def rank_cmd(
    data: Path,
    models: str | None,
    weights: tuple[str, ...],
    image_size: int | None,
    batch_size: int,
    stages: bool,
    plot: Path | None,
    controls: bool,
    features: str,
    standardize: bool,
    fmt: str,
    quiet: bool,
) -> None:
    """Rank zoo models for --data by LogME (and LEEP) from one forward pass each.

    A model whose weights are missing (offline) is reported and the others are ranked;
    the exit status is then 1.

    \b
    zoo-transfer rank --data photos/train --models 'mobilenet_v2.a035_*' --image-size 96
    zoo-transfer rank --data photos/train --weights mobilenet.a025_224=mn.weights.h5 \\
        --controls --stages --plot stages.png

    JSON output: {"source", "n_images", "classes", "models": [{"rank", "model", "weights",
    "logme", "leep", "seconds", "feature_size", "n_images", "image_size",
    "stage_accuracy", "error", "features", "standardized"}]}, best first; "rank" and
    the scores are null for a model that could not be scored, and "error" says why.
    """
    if plot is not None and not stages:
        _fail("--plot draws the accuracy by stage: add --stages.")
    try:
        given = parse_weights(weights)
    except ArgumentError as exc:
        _fail(str(exc))
    names = [m for m in (models or "").split(",") if m.strip()] or list(given)
    if not names:
        _fail(
            "Pass --models (names or patterns, e.g. --models 'mobilenet*'; see "
            "`zoo-transfer list`), or --weights NAME=FILE."
        )
    import_tensorflow_quietly()
    from zoo_transfer.rank import rank

    try:
        result = rank(
            data, names, weights=given, image_size=image_size, batch_size=batch_size,
            stages=stages, controls=controls, progress=not quiet, features=features,
            standardize=standardize,
        )  # fmt: skip
        if plot is not None:
            result.plot_stages(plot)
    except (UnknownModelError, ArgumentError) as exc:
        _fail(str(exc), 2)
    except ZooTransferError as exc:
        _fail(str(exc), 1)
    click.echo(result.to_json() if fmt == "json" else result.to_table())
    if plot is not None:
        click.echo(f"accuracy by stage: {plot}", err=True)
    if result.failed:
        click.echo(
            f"Error: {len(result.failed)} of {len(result.rows)} models could not be ranked: "
            + "; ".join(r.error or "" for r in result.failed),
            err=True,
        )
        raise SystemExit(1)
