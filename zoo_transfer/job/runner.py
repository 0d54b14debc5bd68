"""A training job: data source -> recipe -> `fit` with the callbacks -> an out folder.

The out folder is the unit of work. It holds everything needed to use, judge and rerun
the run, and nothing in it is ever overwritten by accident:

| file | what |
|------|------|
| `config.json` | the resolved `JobConfig`: `zoo-transfer train --config`-free rerun |
| `labels.json` | class names, in the order of the model's outputs |
| `history.json` | one record per finished epoch (metrics, image size, trainable params) |
| `best.keras`, `final.keras` | best validation accuracy, and the last epoch (labels inside) |
| `backup/` | training state of the last two epochs (`zoo_transfer.backup`): `--resume` |
|           | goes on from the last good one; a finished run resumed with more `--epochs` |
|           | trains on |
| `report.html` + PNGs | curves with unfreeze/resize markers, confusion matrix, mistakes |

An existing out folder is refused unless `resume=True` (continue it) or
`overwrite=True` (replace a previous zoo-transfer run; a folder that is not one is never
deleted). Ctrl-C saves `interrupted.keras` and raises `TrainingInterrupted`, whose
message names the resume command; a kill -9 loses at most the running epoch.

```python
from zoo_transfer.job import JobConfig, run
result = run(JobConfig("mobilenet_v3_small", "photos/", epochs=5,
                       progressive=[128, 160, 224], unfreeze={4: "stage4"}), "runs/photos")
print(result.val_accuracy)
```
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo_transfer.errors import (
    BuildArgumentError,
    LabelMismatchError,
    OutputFolderError,
    OutputWriteError,
    TrainingInterrupted,
    ZooTransferError,
)
from zoo_transfer.report import REPORT_FILES

RECIPE_NAMES = (
    "auto",
    "lp-ft",
    "small-similar",
    "small-different",
    "large-similar",
    "large-different",
)
STRATEGIES = ("auto", "mirrored", "tpu", "multiworker")
FINAL_CHOICES = ("best", "last")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
EMBEDDED_DATA = "zoo:digits"  # the demo's digits, shipped with the package
_RUN_FILES = ("config.json", "history.json", "labels.json")
MANIFEST = "zoo-transfer-run.json"  # what a run writes in its out folder: all --overwrite removes
RUN_OUTPUTS = (
    *_RUN_FILES, "metrics.json", "probe.json", "best.keras", "final.keras", "interrupted.keras",
    "backup", "features", MANIFEST, *REPORT_FILES,
)  # fmt: skip
_COUNTED_FROM = "epochs_count_from"  # in config.json: 1 (0.1 wrote 0-based epochs, no key)
LOCK = ".zoo-transfer.lock"  # held by the process training in the folder
_ASIDE = ".zoo-transfer-replaced"  # the earlier run, kept whole until the new one is running


@dataclass
class JobConfig:
    """Everything a training run needs; saved as `config.json` in the out folder.

    Args:
        model: a zoo name (`zoo-transfer list`).
        data: a data source for `zoo_transfer.data.load` (folder, `tfds:NAME[:SPLIT]`) or
            `"zoo:digits"` (the embedded demo data).
        epochs: total epochs.
        recipe: `auto` (`lp-ft`: a linear probe, then fine-tuning; measured best on
            every task of the defaults sweep) or a named recipe.
        similar: whether the data resembles the pretraining data (progressive
            resizing's BatchNorm handling).
        probe: fit the head to convergence on the frozen backbone's features before
            the epochs (`training.probe_head`); default: the recipe's (`lp-ft`: yes).
        final: what `final.keras` holds when there are validation images: `"best"` the
            weights with the best validation accuracy (the probe's or an epoch's, as
            Keras' `EarlyStopping(restore_best_weights=True)`), `"last"` the last epoch's.
        image_size: training side in pixels (default: the card's input size).
        progressive: sizes, e.g. `[128, 160, 224]`, spread evenly over the epochs.
        unfreeze: `{epoch: stage or layer}` for `GradualUnfreezing`; epochs count from
            1, as Keras prints them ("Epoch 4/5"): `{4: "stage4"}` trains stage4 from the
            fourth epoch on.
        lr: base learning rate (default: the recipe's). lr_mult: `(lo, hi)` spread.
        validation: a separate validation source; else `validation_split` of `data`.
        weights: `imagenet`, a weights file, or `none`.
        strategy, precision: distribution strategy and Keras dtype policy.
        cache_features: when the backbone stays frozen, the image size fixed and
            augmentation off, compute the backbone features once and train the head on
            them (`zoo_transfer.cached`); the result is the same full model.
        drop_empty_classes: leave out class folders with no readable image (with a
            warning) instead of failing.
    """

    model: str
    data: str
    epochs: int = 5
    recipe: str = "auto"
    similar: bool = True
    probe: bool | None = None
    final: str = "best"
    image_size: int | None = None
    progressive: list[int] | None = None
    unfreeze: dict[int, str] = field(default_factory=dict)
    lr: float | None = None
    lr_mult: list[float] | None = None
    batch_size: int = 32
    weights: str = "imagenet"
    augment: str = "light"
    validation: str | None = None
    validation_split: float | None = 0.2
    strategy: str = "auto"
    precision: str = "float32"
    seed: int = 0
    cache_features: bool = True
    drop_empty_classes: bool = False

    def __post_init__(self) -> None:
        self.unfreeze = {int(k): str(v) for k, v in (self.unfreeze or {}).items()}
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise BuildArgumentError(f"Expected epochs >= 1. Received: epochs={self.epochs!r}")
        if self.recipe not in RECIPE_NAMES:
            raise BuildArgumentError(
                f"Unknown recipe {self.recipe!r}. Choose one of: {', '.join(RECIPE_NAMES)}."
            )
        if self.final not in FINAL_CHOICES:
            raise BuildArgumentError(
                f"Expected final to be one of {', '.join(FINAL_CHOICES)}. Received: "
                f"final={self.final!r}"
            )
        if self.strategy not in STRATEGIES:
            raise BuildArgumentError(
                f"Unknown strategy {self.strategy!r}. Choose one of: {', '.join(STRATEGIES)}."
            )
        if self.precision not in PRECISIONS:
            raise BuildArgumentError(
                f"Unknown precision {self.precision!r}. Choose one of: {', '.join(PRECISIONS)}."
            )
        if self.lr is not None and not (
            isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0
        ):
            raise BuildArgumentError(
                f"Expected --lr to be a finite number > 0, e.g. 0.001. Received: lr={self.lr!r}"
            )
        if str(self.data).startswith("zoo:") and self.data != EMBEDDED_DATA:
            raise BuildArgumentError(
                f"Unknown embedded data set {self.data!r}. The package ships {EMBEDDED_DATA} "
                "(32 px digits, offline). For your own images pass a folder with one "
                "subfolder per class; for TensorFlow Datasets, tfds:NAME."
            )
        if self.batch_size < 1:
            raise BuildArgumentError(f"Expected batch_size >= 1. Received: {self.batch_size}")
        late = [e for e in self.unfreeze if e > self.epochs or e < 1]
        if late:
            raise BuildArgumentError(
                f"The unfreeze schedule names epoch {late[0]}, but the run has epochs "
                f"1-{self.epochs} (epochs count from 1, as in Keras' 'Epoch 1/{self.epochs}' "
                "lines). Drop it or raise --epochs."
            )
        if self.progressive is not None:
            self.progressive = [int(s) for s in self.progressive]
            progressive_schedule(self.progressive, self.epochs)  # raises if it cannot fit

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["unfreeze"] = {str(k): v for k, v in self.unfreeze.items()}
        d[_COUNTED_FROM] = 1
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> JobConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in d.items() if k in known}
        if d.get(_COUNTED_FROM) != 1:  # a config.json of zoo-transfer 0.1: 0-based epochs
            fields["unfreeze"] = {int(k) + 1: v for k, v in (d.get("unfreeze") or {}).items()}
        return cls(**fields)


@dataclass
class JobResult:
    """What a finished run produced."""

    out: Path
    history: dict[str, list]
    class_names: list[str]
    val_accuracy: float | None
    skipped: list[str]
    events: list[dict[str, Any]]
    model: Any = None
    fingerprint: str = ""  # md5 of the final weights: equal on every worker of a run
    cached: bool = False  # the head trained on cached backbone features
    probe: dict[str, Any] | None = None  # the linear probe before the epochs (probe.json)
    final_from: str = "last epoch"  # whose weights final.keras holds: "epoch 3", "linear probe"


# ---------------------------------------------------------------- parsing helpers
def parse_sizes(text: str) -> list[int]:
    """`"128,160,224"` -> `[128, 160, 224]`."""
    try:
        sizes = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes) or sizes != sorted(sizes):
        raise BuildArgumentError(
            f"Expected increasing sizes such as '128,160,224'. Received: {text!r}"
        )
    return sizes


def parse_unfreeze(text: str) -> dict[int, str]:
    """`"2:stage4,4:stage3"` -> `{2: "stage4", 4: "stage3"}` (epochs count from 1)."""
    out: dict[int, str] = {}
    for part in str(text).split(","):
        if not part.strip():
            continue
        epoch, sep, what = part.partition(":")
        if not sep or not epoch.strip().isdigit() or not what.strip():
            raise BuildArgumentError(
                f"Expected EPOCH:STAGE pairs such as '2:stage4,4:stage3'. Received: {text!r}"
            )
        if int(epoch) < 1:
            raise BuildArgumentError(
                f"Epochs count from 1, as in Keras' 'Epoch 1/5' lines. Received: {text!r}"
            )
        out[int(epoch)] = what.strip()
    return out


def parse_lr_mult(text: str) -> list[float]:
    """`"0.01,1"` -> `[0.01, 1.0]` (a geometric spread from the stem to the head)."""
    try:
        lo, hi = (float(s) for s in str(text).split(","))
    except ValueError:
        raise BuildArgumentError(
            f"Expected --lr-mult as 'lo,hi', e.g. '0.01,1'. Received: {text!r}"
        ) from None
    if not 0 < lo <= hi:
        raise BuildArgumentError(f"Expected 0 < lo <= hi in --lr-mult. Received: {text!r}")
    return [lo, hi]


def progressive_schedule(sizes: list[int], epochs: int) -> dict[int, int]:
    """Spread `sizes` evenly over `epochs`: `[96, 128, 160]` over 6 -> `{0: 96, 2: 128, 4: 160}`."""
    if len(sizes) > epochs:
        raise BuildArgumentError(
            f"{len(sizes)} progressive sizes need at least {len(sizes)} epochs. "
            f"Received: epochs={epochs}."
        )
    return {round(i * epochs / len(sizes)): s for i, s in enumerate(sizes)}


# ---------------------------------------------------------------- the out folder
def _is_chief() -> bool:
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = tf_config.get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
    has_chief = "chief" in tf_config.get("cluster", {})
    return kind is None or kind == "chief" or (kind == "worker" and index == 0 and not has_chief)


def prepare_out(
    out: Path, config: JobConfig, *, resume: bool, overwrite: bool, dry: bool = False
) -> JobConfig:
    """Check the out folder against the rules above; return the config to run.

    With `dry=True` it only checks; nothing is deleted.
    """
    if resume and overwrite:
        raise BuildArgumentError("Pass --resume or --overwrite, not both.")
    saved = out / "config.json"
    exists = out.exists() and any(p.name != LOCK for p in out.iterdir())
    if resume:
        if not saved.exists():
            raise OutputFolderError(
                f"Nothing to resume in {out}: it has no config.json from an earlier run. "
                "Drop --resume to start a new run there."
            )
        before = JobConfig.from_json(json.loads(saved.read_text()))
        mine, theirs = config.to_json(), before.to_json()
        differ = [k for k in mine if k != "epochs" and mine[k] != theirs[k]]
        if differ:
            pairs = ", ".join(f"{k} ({theirs[k]!r} -> {mine[k]!r})" for k in differ)
            raise OutputFolderError(
                f"--resume continues the run in {out} with its config.json, but these "
                f"options differ: {pairs}. Use the same options (only --epochs may grow), "
                "or start a new run with another --out."
            )
        done = _finished_epochs(out)
        if done >= config.epochs:
            raise OutputFolderError(
                f"The run in {out} has finished {done} epochs, and --epochs {config.epochs} "
                "asks for no more, so there is nothing to resume; nothing was changed. Pass "
                f"--epochs above {done} to train on, or start a new run with another --out."
            )
        return config
    if exists:
        if not overwrite:
            raise OutputFolderError(
                f"{out} already exists and is not empty. Pass --resume to continue the run "
                "in it, --overwrite to replace it, or choose another --out."
            )
        if not any((out / f).exists() for f in _RUN_FILES):
            raise OutputFolderError(
                f"{out} is not a zoo-transfer out folder (no config.json or history.json), "
                "so --overwrite will not delete it. Choose another --out."
            )
        if not dry:
            set_aside_earlier_run(out)
    return config


_LOCKS: dict[Path, Any] = {}  # out folder -> the open lock file this process holds


def _lock(out: Path) -> None:
    """Hold `out/.zoo-transfer.lock` for this process, or refuse: one run per out folder.

    The lock is an `fcntl.flock`, released by `_unlock` or when the process ends (even
    by kill -9), so a crashed run never leaves the folder locked.
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / LOCK, "a+")  # noqa: SIM115 - held until _unlock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "another process"
        handle.close()
        raise OutputFolderError(
            f"{out} is in use: zoo-transfer (pid {pid}) is training there. Wait for it to "
            "finish (or stop it), or choose another --out."
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    _LOCKS[out.resolve()] = handle


def _unlock(out: Path) -> None:
    """Release and remove the lock; a folder left holding nothing else is removed too."""
    handle = _LOCKS.pop(out.resolve(), None)
    if handle is None:
        return
    (out / LOCK).unlink(missing_ok=True)
    handle.close()
    if not any(out.iterdir()):  # a new run that failed before writing anything
        out.rmdir()


def _finished_epochs(out: Path) -> int:
    """How many epochs the run in `out` finished: its newest backup's, else history.json's."""
    from zoo_transfer.backup import finished_epochs

    backed_up = finished_epochs(out / "backup")
    if backed_up is not None:
        return backed_up
    try:
        records = json.loads((out / "history.json").read_text())
    except (OSError, ValueError):
        return 0
    return len(records) if isinstance(records, list) else 0


def _earlier_outputs(out: Path) -> list[str]:
    """The names an earlier run wrote in `out`: its manifest's list, else the known outputs."""
    try:
        names = json.loads((out / MANIFEST).read_text())["outputs"]
        names = [n for n in names if isinstance(n, str) and "/" not in n and n not in ("", "..")]
    except (OSError, ValueError, KeyError, TypeError):
        names = list(RUN_OUTPUTS)
    return [n for n in names if (out / n).exists() or (out / n).is_symlink()]


def set_aside_earlier_run(out: Path) -> None:
    """Move the earlier run's outputs (and nothing of the user's) into `out/.zoo-transfer-replaced`.

    The new run deletes them once it has finished its first epoch
    (`drop_earlier_run`); if it fails before, `restore_earlier_run` puts them back.
    """
    aside = out / _ASIDE
    if aside.exists():  # a replacement that never finished: its earlier run comes back first
        restore_earlier_run(out)
    aside.mkdir()
    for name in _earlier_outputs(out):
        os.replace(out / name, aside / name)


def restore_earlier_run(out: Path) -> None:
    """Undo `set_aside_earlier_run`: remove what the new run wrote, move the earlier run back."""
    aside = out / _ASIDE
    if not aside.is_dir():
        return
    for name in RUN_OUTPUTS:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    for entry in aside.iterdir():
        os.replace(entry, out / entry.name)
    aside.rmdir()


def drop_earlier_run(out: Path) -> None:
    """Delete the earlier run set aside by `set_aside_earlier_run` (the new one is running)."""
    shutil.rmtree(out / _ASIDE, ignore_errors=True)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, default=_json_default, allow_nan=False))
    os.replace(tmp, path)  # never a half-written file after a kill


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as None: JSON has no NaN (a diverged loss is null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ---------------------------------------------------------------- setup pieces
def make_strategy(name: str) -> Any:
    """The `tf.distribute` strategy for `--strategy`."""
    import tensorflow as tf

    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise BuildArgumentError(
                "--strategy multiworker needs TF_CONFIG naming the cluster and this worker, "
                'e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.NotFoundError) as err:
            raise BuildArgumentError(f"--strategy tpu: no TPU found ({err}).") from None
        return tf.distribute.TPUStrategy(resolver)
    if name == "mirrored" or (name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _load_data(config: JobConfig, final_size: int) -> Any:
    from zoo_transfer import data

    if config.data == EMBEDDED_DATA:
        from zoo_transfer.recipes.digitnet import demo_digits

        x_train, y_train, x_test, y_test, names = demo_digits(seed=config.seed, train_per_class=10)
        splits = data.load(
            (x_train, y_train),
            image_size=final_size,
            batch_size=config.batch_size,
            validation=(x_test, y_test),
            augment=config.augment,
            seed=config.seed,
        )
        splits.class_names = list(names)
        return splits
    return data.load(
        config.data,
        image_size=final_size,
        batch_size=config.batch_size,
        validation_split=None if config.validation else config.validation_split,
        validation=config.validation,
        augment=config.augment,
        seed=config.seed,
        drop_empty_classes=config.drop_empty_classes,
    )


def _recipe_name(config: JobConfig, num_train: int) -> str:
    """The recipe to run: `auto` is LP-FT, whatever the data's size (see `recipes.lp_ft`)."""
    return "lp_ft" if config.recipe == "auto" else config.recipe.replace("-", "_")


def _events(
    history: dict[str, list], unfreeze: dict[int, str] | None = None
) -> list[dict[str, Any]]:
    """Unfreeze and resize events, read back from the per-epoch logs (0-based epochs).

    `unfreeze` (the schedule) names what was unfrozen; the logs only show the count.
    """
    unfreeze = unfreeze or {}
    events = []
    sizes, params = history.get("image_size", []), history.get("trainable_params", [])
    for e in range(1, len(sizes)):
        if sizes[e] != sizes[e - 1]:
            events.append(
                {"epoch": e, "kind": "resize", "detail": f"{sizes[e - 1]} -> {sizes[e]} px"}
            )
    for e in range(1, len(params)):
        if params[e] != params[e - 1]:
            what = f"{unfreeze[e]}: " if e in unfreeze else ""
            events.append(
                {"epoch": e, "kind": "unfreeze", "detail": f"{what}{params[e]:,} trainable params"}
            )
    return sorted(events, key=lambda d: d["epoch"])


def _history_callback(path: Path, start_records: list[dict[str, Any]]) -> Any:
    import keras

    class HistoryFile(keras.callbacks.Callback):
        """Write `history.json` after every epoch, so a kill loses nothing finished."""

        def __init__(self) -> None:
            super().__init__()
            self.records = list(start_records)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            # numbered as Keras prints them ("Epoch 1/5"); a resumed run replaces the rest
            record = {"epoch": epoch + 1, **{k: _plain(v) for k, v in (logs or {}).items()}}
            self.records = self.records[:epoch] + [record]
            if _is_chief():
                _write_json(path, self.records)

    return HistoryFile()


def _drop_earlier_run_callback(out: Path) -> Any:
    import keras

    class DropEarlierRun(keras.callbacks.Callback):
        """Once the new run has finished an epoch, the run it replaces is deleted."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            drop_earlier_run(out)

    return DropEarlierRun()


def _from_zero(schedule: dict[int, str]) -> dict[int, str]:
    """A schedule counted from 1 (options, config.json) as Keras' 0-based epoch indices."""
    return {epoch - 1: what for epoch, what in schedule.items()}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _as_lists(records: list[dict[str, Any]]) -> dict[str, list]:
    keys: list[str] = []
    for r in records:
        keys += [k for k in r if k != "epoch" and k not in keys]
    return {k: [r.get(k) for r in records] for k in keys}


# ---------------------------------------------------------------- the job
def run(
    config: JobConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    verbose: int = 1,
    report: bool = True,
    command: str | None = None,
) -> JobResult:
    """Train `config` into the out folder `out` (see the module docstring).

    Args:
        resume: continue the run in `out` from its last finished epoch.
        overwrite: replace an earlier zoo-transfer run in `out`.
        verbose: Keras' progress output (0, 1 or 2).
        report: write `report.html` and its PNGs at the end.
        command: the shell command that started the run, for the resume hint.

    Keras' global dtype policy is set to `config.precision` for the run and restored
    afterwards.
    """
    import keras

    previous = keras.config.dtype_policy()
    try:
        return _run(
            config,
            Path(out),
            resume=resume,
            overwrite=overwrite,
            verbose=verbose,
            report=report,
            command=command,
        )
    except BaseException as err:
        kept = ""
        if (Path(out) / _ASIDE).is_dir():  # failed before its first epoch: the earlier run stays
            restore_earlier_run(Path(out))
            kept = f" The earlier run in {out} is kept as it was."
            if isinstance(err, TrainingInterrupted):
                raise TrainingInterrupted(
                    f"Interrupted before the first epoch finished.{kept}", resume_command=""
                ) from None
        unwritable = _write_failure(err, Path(out))
        if unwritable:
            raise OutputWriteError(f"{unwritable}{kept}") from None
        raise
    finally:
        _unlock(Path(out))
        keras.config.set_dtype_policy(previous)


def _run(
    config: JobConfig,
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    verbose: int,
    report: bool,
    command: str | None,
) -> JobResult:
    import keras

    from zoo_transfer.backup import EpochBackup, restore_backup
    from zoo_transfer.callbacks import EpochSeeding, GradualUnfreezing, ProgressiveResizing
    from zoo_transfer.optimizers import transfer_optimizer
    from zoo_transfer.recipes import RECIPES
    from zoo_transfer.registry import get_card
    from zoo_transfer.saving import best_model_checkpoint, save_for_inference

    chief = _is_chief()
    if chief:  # other workers of a multi-worker run write to a scratch folder only
        prepare_out(out, config, resume=resume, overwrite=overwrite, dry=True)
        _lock(out)
    card = get_card(config.model)
    native = card.input_size[0] if card.input_size else None
    sizes = config.progressive or [config.image_size or native or 224]
    minimum = card.min_input_size[0] if card.min_input_size else 1
    small = [s for s in sizes if s < minimum]
    if small:
        raise BuildArgumentError(
            f"Image size {small[0]} px is below {card.name}'s minimum input of {minimum} px. "
            f"Use --image-size/--progressive sizes of at least {minimum}."
        )

    strategy = make_strategy(config.strategy)
    keras.mixed_precision.set_dtype_policy(config.precision)
    keras.utils.set_random_seed(config.seed)

    splits = _load_data(config, sizes[-1])
    class_names = list(splits.class_names)
    labels_path = out / "labels.json"
    if resume and labels_path.exists():
        before = json.loads(labels_path.read_text())
        if before != class_names:
            raise LabelMismatchError(
                f"The run in {out} was trained on {len(before)} classes {before[:5]}..., but "
                f"{config.data} now has {len(class_names)}: {class_names[:5]}.... Resume with "
                "the same data, or start a new run with another --out."
            )
    if len(class_names) < 2:
        raise BuildArgumentError(
            f"{config.data} has {len(class_names)} class; transfer learning needs at least 2."
        )

    # the data loaded and matches: only now may an earlier run be replaced
    if chief:
        prepare_out(out, config, resume=resume, overwrite=overwrite)
    if chief:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / MANIFEST, {"outputs": list(RUN_OUTPUTS)})
        _write_json(out / "config.json", config.to_json())
        _write_json(labels_path, class_names)
        work = out
    else:
        import tempfile

        work = Path(tempfile.mkdtemp(prefix="zoo-transfer-worker-"))

    recipe = _recipe_name(config, splits.num_train)
    weights = None if str(config.weights).lower() == "none" else config.weights
    shape = (None, None, 3) if len(set(sizes)) > 1 else (sizes[0], sizes[0], 3)
    with strategy.scope():
        model, plan = RECIPES[recipe](
            config.model,
            len(class_names),
            weights=weights,
            input_shape=shape,
        )
        loss = plan.loss
        if getattr(splits, "label_mode", "int") == "categorical":
            loss = "categorical_crossentropy"
        optimizer = transfer_optimizer(
            model,
            "adam",
            learning_rate=config.lr or plan.learning_rate,
            lr_mult=tuple(config.lr_mult) if config.lr_mult else plan.lr_mult,
        )
        model.compile(optimizer, loss, metrics=["accuracy"])
    unfreeze = _from_zero(config.unfreeze) if config.unfreeze else dict(plan.unfreeze)

    initial_epoch = 0
    if resume:  # weights, optimizer and RNG state of the last good epoch
        with strategy.scope():
            initial_epoch = restore_backup(model, work / "backup")
    start_records: list[dict[str, Any]] = []
    history_path = out / "history.json"
    if resume and history_path.exists():
        start_records = json.loads(history_path.read_text())[:initial_epoch]
    history_cb = _history_callback(history_path, start_records)
    best_cb = None
    probe = _probe(config, plan, model, splits, out, work, initial_epoch, chief, verbose, sizes[-1])
    callbacks: list[Any] = [EpochSeeding(splits.train_images)]
    if len(set(sizes)) > 1:
        callbacks.append(
            ProgressiveResizing(
                progressive_schedule(sizes, config.epochs),
                splits.train_images,
                validation=splits.val_images,
                similar=config.similar and weights is not None,
                verbose=verbose,
            )
        )
    if unfreeze:  # Keras callbacks get 0-based epoch indices
        callbacks.append(GradualUnfreezing(unfreeze, verbose=verbose))
    if splits.val is not None:
        earlier = [r["val_accuracy"] for r in start_records if r.get("val_accuracy") is not None]
        if probe and probe.get("val_accuracy") is not None:
            earlier.append(probe["val_accuracy"])  # best.keras holds the probe until beaten
        best_cb = best_model_checkpoint(
            work / "best.keras",
            class_names=class_names,
            image_size=sizes[-1],
            best=max(earlier, default=None),
        )
        callbacks.append(best_cb)

    callbacks.append(history_cb)  # it records what the others added to the logs
    # Last: a kill before the backup is written repeats the epoch, history and all.
    callbacks.append(EpochBackup(work / "backup"))
    if chief and overwrite:
        callbacks.append(_drop_earlier_run_callback(out))
    if config.strategy == "multiworker":
        _multiworker_fixes(model, strategy, next(iter(splits.train)))
    from zoo_transfer.training import fit_transfer

    try:  # on cached backbone features when exact: the frozen forward pass runs once
        cached = fit_transfer(
            model,
            splits,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            cache="auto" if config.cache_features else "never",
            probe=False,  # done above
            verbose=verbose,
            cache_dir=work / "features",
            seed=config.seed,
            shuffle=False,  # the pipeline shuffles: epoch e's order comes from (seed, e)
        ).cached
    except KeyboardInterrupt:
        hint = command or f"zoo-transfer train {config.model} --data {config.data}"
        hint = hint if "--resume" in hint else f"{hint} --resume"
        if chief:
            save_for_inference(
                model, out / "interrupted.keras", class_names=class_names, image_size=sizes[-1]
            )
        raise TrainingInterrupted(
            f"Interrupted. Finished epochs are saved in {out} (interrupted.keras holds the "
            f"weights at the interruption). Continue with:\n  {hint}",
            resume_command=hint,
        ) from None

    history = _as_lists(history_cb.records)
    events = _events(history, unfreeze)
    val_accuracy = history.get("val_accuracy", [None])[-1] if history else None
    final_from = "last epoch"
    if config.final == "best" and best_cb is not None and val_accuracy is not None:
        if best_cb.best > val_accuracy and (work / "best.keras").exists():
            best = keras.saving.load_model(work / "best.keras", compile=False)
            model.set_weights(best.get_weights())
            val_accuracy = best_cb.best
            epochs_seen = history.get("val_accuracy", [])
            from_probe = (probe or {}).get("val_accuracy") == best_cb.best
            final_from = (
                f"epoch {epochs_seen.index(best_cb.best) + 1}"
                if best_cb.best in epochs_seen and not from_probe
                else "linear probe"
            )
    if chief:
        final = save_for_inference(
            model, out / "final.keras", class_names=class_names, image_size=sizes[-1]
        )
        (out / "interrupted.keras").unlink(missing_ok=True)
        if report:
            if config.strategy == "multiworker":  # predict here alone, not collectively
                model = keras.saving.load_model(final)
            shown = {**probe, "final_from": final_from} if probe else None
            _write_report(out, model, splits, class_names, history, events, config, recipe, shown)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return JobResult(
        out, history, class_names, val_accuracy, list(splits.skipped), events, model,
        _fingerprint(model), cached, probe, final_from,
    )  # fmt: skip


def _probe(
    config: JobConfig,
    plan: Any,
    model: Any,
    splits: Any,
    out: Path,
    work: Path,
    initial_epoch: int,
    chief: bool,
    verbose: int,
    image_size: int,
) -> dict[str, Any] | None:
    """The linear probe before the first epoch, written to `probe.json` (and, with
    validation images, to `best.keras`); on a resumed run, the one written then."""
    from zoo_transfer.saving import save_for_inference
    from zoo_transfer.training import probe_head

    path = out / "probe.json"
    if initial_epoch > 0:  # the restored head already started from it
        return json.loads(path.read_text()) if path.exists() else None
    if not (plan.probe if config.probe is None else config.probe):
        return None
    result = probe_head(model, splits, verbose=verbose)
    if result is None:
        return None
    probe = {
        "val_accuracy": result.val_accuracy,
        "train_accuracy": result.train_accuracy,
        "l2": result.l2,
        "tried": [list(t) for t in result.tried],
        "seconds": round(result.seconds, 2),
    }
    if chief:
        _write_json(path, probe)
    if result.val_accuracy is not None:  # every worker: each restores from its own copy
        save_for_inference(
            model,
            work / "best.keras",
            class_names=list(splits.class_names),
            image_size=image_size,
        )
    return probe


_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def _write_failure(err: BaseException, out: Path) -> str:
    """The message for an error writing in `out` (disk full, read-only), else ''."""
    if not isinstance(err, OSError) or isinstance(err, ZooTransferError):
        return ""
    code = err.errno
    where = err.filename
    if where is not None and not Path(where).resolve().is_relative_to(out.resolve()):
        return ""  # not ours to explain: e.g. a data file that cannot be read
    if code in _FULL:
        from zoo_transfer.backup import finished_epochs

        done = finished_epochs(out / "backup") if out.is_dir() else None
        kept = (
            f" The {done} epoch(s) finished so far are kept in {out / 'backup'}: once there "
            "is room, run the same command with --resume."
            if done
            else ""
        )
        return (
            f"Cannot write in {out}: the disk is full (no space left on device). Free some "
            f"space or choose an --out on another disk.{kept}"
        )
    if code in _READ_ONLY:
        return (
            f"Cannot write in {out}: {os.strerror(code).lower()}"
            f"{f' ({where})' if where else ''}. Choose an --out folder you can write to."
        )
    return ""


def _fingerprint(model: Any) -> str:
    """md5 of every weight: equal on all workers when their gradients were all-reduced."""
    import hashlib

    import keras
    import numpy as np

    digest = hashlib.md5()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def _multiworker_fixes(model: Any, strategy: Any, batch: Any) -> None:
    """Let Keras 3 `fit` run under `MultiWorkerMirroredStrategy` (keras-team/keras#20585).

    Keras 3.15 fails there in two places, both about logs, not about training: it
    builds the model from a batch averaged across workers (`strategy.reduce` of a
    per-replica batch, which MultiWorker cannot do eagerly), and it reduces scalar
    logs with `axis=0`. We build from a local batch and average the logs per worker.
    Gradients are still all-reduced across workers by TensorFlow's collective
    runtime: the multi-worker test checks that both workers end with equal weights.
    """
    import keras.src.backend.tensorflow.trainer as tf_trainer

    tf_trainer._collective_all_reduce_multi_worker = lambda strategy: False

    def build_locally(iterator: Any = None, data_batch: Any = None) -> None:
        with strategy.scope():
            model._symbolic_build(data_batch=batch)

    model._maybe_symbolic_build = build_locally


def _write_report(
    out: Path,
    model: Any,
    splits: Any,
    class_names: list[str],
    history: dict[str, list],
    events: list[dict[str, Any]],
    config: JobConfig,
    recipe: str,
    probe: dict[str, Any] | None = None,
) -> None:
    from zoo_transfer.report import write_report

    confusion, mistakes, metrics = None, [], {}
    if splits.val is not None:
        from zoo_transfer.predict import crop_fraction_of

        confusion, mistakes, metrics = _confusion(
            model, splits.val, class_names, crop_fraction_of(model)
        )
        _write_json(out / "metrics.json", metrics)
    resolved = {**config.to_json(), "resolved_recipe": recipe, "skipped_files": splits.skipped}
    write_report(
        out,
        history=history,
        events=events,
        confusion=confusion,
        class_names=class_names,
        misclassified=mistakes,
        config=resolved,
        probe=probe,
        notes=_tta_note(metrics),
    )


def _tta_note(metrics: dict[str, Any]) -> list[str]:
    from zoo_transfer.predict import TTA_VIEWS

    plain = metrics.get("val_accuracy")
    tried = {n: metrics.get(f"val_accuracy_tta_{n}") for n in TTA_VIEWS if n != "none"}
    if plain is None or None in tried.values():
        return []
    best = max(tried, key=lambda n: (tried[n], -len(TTA_VIEWS[n])))
    verdict = (
        f"use --tta {best} for this data" if tried[best] > plain else "leave it off for this data"
    )
    shown = ", ".join(f"{n} {a:.4f} ({a - plain:+.4f})" for n, a in tried.items())
    return [
        f"Test-time augmentation (evaluate/predict --tta), val_accuracy {plain:.4f} without: "
        f"{shown}: {verdict}."
    ]


def _confusion(
    model: Any, val: Any, class_names: list[str], crop_fraction: float = 0.875
) -> tuple[Any, list, dict]:
    """Confusion matrix, misclassified images and accuracy on the validation split, and
    the accuracy of each test-time augmentation (`evaluate --tta`) on it."""
    import numpy as np

    from zoo_transfer.predict import TTA_VIEWS, tta_views

    n = len(class_names)
    matrix = np.zeros((n, n), dtype=np.int64)
    mistakes = []
    tried = {name: used for name, used in TTA_VIEWS.items() if name != "none"}
    tta_correct = dict.fromkeys(tried, 0)
    for images, labels in val:
        labels = np.asarray(labels)
        if labels.ndim == 2:
            labels = labels.argmax(-1)
        # views: the images, their centre crop, and the mirror images of both
        probs = [
            np.asarray(model.predict_on_batch(view))
            for view in tta_views(np.asarray(images), "flip+crop", crop_fraction)
        ]
        pred = probs[0].argmax(-1)
        for name, used in tried.items():
            tta_correct[name] += int(np.sum(sum(probs[i] for i in used).argmax(-1) == labels))
        np.add.at(matrix, (labels, pred), 1)
        for img, t, p in zip(np.asarray(images), labels, pred, strict=True):
            if t != p:
                mistakes.append(
                    (np.clip(img, 0, 255).astype("uint8"), class_names[t], class_names[p])
                )
    # every true class in turn, so the grid is not all from the first classes
    by_class: dict[str, list] = {}
    for item in mistakes:
        by_class.setdefault(item[1], []).append(item)
    mistakes = [
        group[i]
        for i in range(max(map(len, by_class.values()), default=0))
        for group in by_class.values()
        if i < len(group)
    ]
    total = int(matrix.sum())
    metrics = {
        "val_accuracy": float(np.trace(matrix) / total) if total else None,
        "val_images": total,
    }
    for name, correct in tta_correct.items():  # `evaluate --tta NAME`, measured
        metrics[f"val_accuracy_tta_{name}"] = float(correct / total) if total else None
    return matrix, mistakes, metrics
