"""`zoo-transfer train` and `zoo-transfer demo`: the training job from the shell.

TensorFlow is imported only when a command runs, so `zoo-transfer list` stays fast.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from zoo_transfer.cli._quiet import import_tensorflow_quietly
from zoo_transfer.cli.common import fail as _fail
from zoo_transfer.errors import TrainingInterrupted, ZooTransferError
from zoo_transfer.job.config import RECIPE_NAMES


def _progress(quiet: bool) -> int:
    """Keras' verbosity: bars on a terminal, one line per epoch into a file or pipe."""
    if quiet:
        return 0
    return 1 if sys.stdout.isatty() else 2


def _interrupted(exc: TrainingInterrupted) -> None:
    """Ctrl-C is the user's choice, not an error: say how to continue, exit 130."""
    click.echo(str(exc), err=True)
    sys.exit(130)


def _command_line() -> str:
    return " ".join(["zoo-transfer", *(shlex.quote(a) for a in sys.argv[1:])])


@click.command("train")
@click.argument("model")
@click.option("--data", "data", required=True, help="Folder of class subfolders, or tfds:NAME.")
@click.option("--validation", help="Separate validation source (else --validation-split).")
@click.option("--validation-split", type=float, default=0.2, show_default=True)
@click.option(
    "--epochs",
    type=int,
    help="Epochs after the linear probe. Default: from the number of training images, 5 "
    "below 5,000 and 10 from there (measured: BENCHMARKS.md); the log says which.",
)
@click.option(
    "--recipe",
    type=click.Choice(list(RECIPE_NAMES)),
    default="auto",
    show_default=True,
    help="auto is lp-ft: a converged linear head first, then the whole backbone "
    "fine-tunes from it at a low learning rate. situation: the four-situation table, from "
    "the number of images and the measured domain (different data is cut where a linear "
    "probe on each stage peaks).",
)
@click.option(
    "--similar/--different",
    default=None,
    help="Is the data like the pretraining data? Default: measured from the source head's "
    "confidence on your images (the log and the report say why). It picks the situation "
    "recipe, and progressive resizing's BatchNorm handling.",
)
@click.option(
    "--rank",
    "rank_json",
    type=click.Path(exists=True, dir_okay=False),
    help="The JSON of `zoo-transfer rank --format json` on this data: the report shows the "
    "candidates beside the trained model.",
)
@click.option(
    "--probe/--no-probe",
    default=None,
    help="Fit the head to convergence on frozen features before the epochs (default: the "
    "recipe's; lp-ft does).",
)
@click.option(
    "--final",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="What final.keras holds when there are validation images: the weights with the best "
    "validation accuracy (the linear probe's or an epoch's), or the last epoch's.",
)
@click.option(
    "--image-size",
    type=int,
    help="Training side in pixels. Default: the card's, or 128 for images of at most 64 px "
    "(as accurate, in half the time).",
)
@click.option(
    "--progressive",
    help="Sizes spread over the epochs, e.g. 128,160,224. A transformer is rebuilt for "
    "each size (multiples of its patch size; position embeddings interpolated).",
)
@click.option(
    "--unfreeze",
    help="EPOCH:STAGE pairs, e.g. 3:stage4,5:stage3: stage4 trains from epoch 3 on. Epochs "
    "count from 1 everywhere (options, the 'Epoch 3/6' lines, history.json, the report).",
)
@click.option("--lr", type=float, help="Base learning rate (default: the recipe's).")
@click.option("--lr-mult", help="Discriminative LR spread lo,hi from stem to head, e.g. 0.01,1.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option(
    "--weights", default="imagenet", show_default=True, help="imagenet, a weights file, or none."
)
@click.option(
    "--augment",
    type=click.Choice(["none", "light", "medium", "heavy"]),
    default="light",
    show_default=True,
)
@click.option("--out", type=click.Path(path_type=Path), help="Out folder (default runs/MODEL).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@click.option("--overwrite", is_flag=True, help="Replace the earlier run in --out.")
@click.option(
    "--strategy",
    type=click.Choice(["auto", "mirrored", "tpu", "multiworker"]),
    default="auto",
    show_default=True,
    help="tf.distribute strategy; on KERAS_BACKEND=jax, mirrored/tpu are "
    "keras.distribution.DataParallel over the local devices (auto: when there are several "
    "GPUs/TPUs).",
)
@click.option(
    "--precision",
    type=click.Choice(["float32", "mixed_float16", "mixed_bfloat16"]),
    default="float32",
    show_default=True,
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--cache-features/--no-cache-features",
    default=True,
    show_default=True,
    help="Frozen backbone, fixed size, no augmentation: run the backbone once, train the head.",
)
@click.option(
    "--drop-empty-classes",
    is_flag=True,
    help="Leave out class folders with no readable image (with a warning) instead of failing.",
)
@click.option(
    "--l2-sp",
    "l2_sp",
    type=float,
    metavar="ALPHA",
    help="L2-SP: pull every pretrained weight toward its pretrained value while fine-tuning, "
    "with strength ALPHA (e.g. 0.01); the new head gets plain L2 of ALPHA/10.",
)
@click.option(
    "--wise-ft",
    "wise_ft",
    metavar="ALPHA|sweep",
    help="WiSE-FT after the epochs: final.keras = (1-ALPHA) x the linear probe's weights + "
    "ALPHA x the last epoch's (--final does not apply); 'sweep' chooses ALPHA in "
    "0,0.25,...,1 on the validation images (metrics.json and the report list each).",
)
@click.option(
    "--adabn",
    is_flag=True,
    help="AdaBN: re-estimate every BatchNorm layer's statistics on the training images "
    "before the linear probe.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_cmd(model: str, **opts) -> None:
    """Fine-tune MODEL on --data into an out folder (models, history, report).

    MODEL is a zoo name (`zoo-transfer list`) or a local keras-hub preset folder
    (config.json, model.weights.h5, image_converter.json), whose own weights are the
    pretrained ones.

    \b
    zoo-transfer train mobilenet_v3_small --data photos/ --progressive 160,224 \\
        --unfreeze 4:stage4 --epochs 6 --out runs/photos
    zoo-transfer train presets/my_dinov2 --data photos/ --unfreeze 3:block10
    """
    from zoo_transfer.job import (
        JobConfig,
        check_out,
        is_model_folder,
        parse_lr_mult,
        parse_sizes,
        parse_unfreeze,
        parse_wise_ft,
        run,
    )

    if opts["image_size"] and opts["progressive"]:
        _fail("Pass --image-size or --progressive, not both.")
    try:
        config = JobConfig(
            model=model,
            data=opts["data"],
            epochs=opts["epochs"],
            recipe=opts["recipe"],
            similar=opts["similar"],
            probe=opts["probe"],
            final=opts["final"],
            image_size=opts["image_size"],
            progressive=parse_sizes(opts["progressive"]) if opts["progressive"] else None,
            unfreeze=parse_unfreeze(opts["unfreeze"]) if opts["unfreeze"] else {},
            lr=opts["lr"],
            lr_mult=parse_lr_mult(opts["lr_mult"]) if opts["lr_mult"] else None,
            batch_size=opts["batch_size"],
            weights=opts["weights"],
            augment=opts["augment"],
            validation=opts["validation"],
            validation_split=opts["validation_split"],
            strategy=opts["strategy"],
            precision=opts["precision"],
            seed=opts["seed"],
            cache_features=opts["cache_features"],
            drop_empty_classes=opts["drop_empty_classes"],
            l2_sp=opts["l2_sp"],
            wise_ft=parse_wise_ft(opts["wise_ft"]) if opts["wise_ft"] is not None else None,
            adabn=opts["adabn"],
            rank=opts["rank_json"],
        )
        out = opts["out"] or Path("runs") / (
            Path(model).name if is_model_folder(model) else model.replace("/", "_")
        )
        # before TensorFlow loads: a refused out folder fails in a second, not ten
        check_out(config, out, resume=opts["resume"], overwrite=opts["overwrite"])
        import_tensorflow_quietly()
        result = run(
            config,
            out,
            resume=opts["resume"],
            overwrite=opts["overwrite"],
            verbose=_progress(opts["quiet"]),
            command=_command_line(),
        )
    except TrainingInterrupted as exc:
        _interrupted(exc)
    except ZooTransferError as exc:
        _fail(str(exc))
    acc = result.val_accuracy
    if opts["strategy"] == "multiworker":
        click.echo(f"weights fingerprint: {result.fingerprint}")
    if result.skipped:
        click.echo(f"skipped {len(result.skipped)} unreadable files (see config in the report)")
    how = " (head trained on cached backbone features)" if result.cached else ""
    if opts["quiet"]:  # verbose runs said it before training
        for what, why in result.chosen.items():
            click.echo(f"{what.replace('_', ' ')}: {why}")
    if result.domain is not None and opts["quiet"]:
        click.echo(f"domain: {result.domain['reason']}")
        if "situation" in result.domain:
            click.echo(f"recipe: {result.domain['situation']['reason']}")
    probed = (result.probe or {}).get("val_accuracy")
    if probed is not None:
        from zoo_transfer.input_spec import fixed_side

        side = fixed_side(result.model)
        by_stage = side is not None and len(set(result.history.get("image_size", []))) > 1
        holds = (  # a transformer rebuilt per size: best.keras is at the last size
            f"the best epoch at {side} px, the last size"
            if by_stage
            else "the best of the probe and the epochs"
        )
        click.echo(
            f"linear probe before the epochs: val_accuracy {probed:.4f} (best.keras holds {holds})"
        )
    if result.wise_ft is not None:
        click.echo(f"final.keras holds the {result.final_from}")
    elif result.final_from != "last epoch":
        click.echo(f"final.keras holds the {result.final_from}'s weights (best val_accuracy)")
    click.echo(
        f"done{how}: val_accuracy {'-' if acc is None else f'{acc:.4f}'}; "
        f"models, history and report in {result.out}"
    )


@click.command("demo")
@click.option("--model", default="digitnet", show_default=True, help="A zoo name.")
@click.option(
    "--data",
    default="zoo:digits",
    show_default=True,
    help="zoo:digits (embedded, offline) or a source such as tfds:tf_flowers.",
)
@click.option("--epochs", type=int, default=8, show_default=True)
@click.option(
    "--out", type=click.Path(path_type=Path), help="New folder (default: zoo-transfer-demo[-N])."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo_cmd(model: str, data: str, epochs: int, out: Path | None, quiet: bool) -> None:
    """The main job, offline: transfer vs from scratch, with models and a report."""
    import_tensorflow_quietly()
    from zoo_transfer.demo import demo

    try:
        demo(model, data, out=out, epochs=epochs, verbose=0 if quiet else 2, echo=click.echo)
    except TrainingInterrupted as exc:
        _interrupted(exc)
    except ZooTransferError as exc:
        _fail(str(exc))
