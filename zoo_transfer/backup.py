"""A run's resumable state: one folder per finished epoch, written atomically.

`EpochBackup` saves, at the end of every epoch, what `fit` needs to go on as if it had
never stopped: the weights, the optimizer (its slots and step counters), the state of
every random generator in the model (dropout draws), and the number of finished epochs.
The input pipeline's randomness needs no saving: `zoo_transfer.data` draws epoch `e`'s
shuffle and augmentation from `(seed, e)` alone, and `EpochSeeding` tells it `e`.

In the backup folder:

    epoch-0003/model.weights.h5   the model and its optimizer (`model.save_weights`)
    epoch-0003/state.json         {"epoch": 3, "rng": [[seed, counter], ...]}

Each backup is written into a hidden `.partial` folder, flushed to disk, then renamed
into place, so a kill or a full disk at any moment leaves the earlier backups whole;
the two newest are kept. `restore_backup` loads the newest backup that reads back,
warns (naming it) when it had to pass over a damaged one, and raises `BackupError`
(naming the files and what to do) when none reads. The layout of
`keras.callbacks.BackupAndRestore` (`latest.weights.h5` + `training_metadata.json`,
written by zoo-transfer 0.1) is read too.

```python
start = restore_backup(model, "run/backup")  # finished epochs; 0 when there is none
model.fit(train, initial_epoch=start, epochs=10, callbacks=[EpochBackup("run/backup")])
```
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import keras

from zoo_transfer.backup_folder import (
    KEEP,
    LEGACY_STATE,
    LEGACY_WEIGHTS,
    STATE,
    WEIGHTS,
    Backup,
    backups,
)
from zoo_transfer.backup_folder import finished_epochs as finished_epochs
from zoo_transfer.errors import BackupError, BackupWarning
from zoo_transfer.saving import ensure_room, failed_writes_closed

_RNG = "seed_generator_state"  # the variable behind every keras.random.SeedGenerator


def _generators(model: Any) -> list[Any]:
    return [v for v in model.variables if v.name == _RNG]


def _load(model: Any, backup: Backup) -> None:
    state = json.loads(backup.state.read_text())
    if int(state["epoch"]) != backup.epoch:
        raise BackupError(f"state.json says epoch {state['epoch']}, the name {backup.epoch}")
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # its slots must exist to load
    model.load_weights(backup.weights)
    rng = state.get("rng") or []
    generators = _generators(model)
    if len(rng) == len(generators):
        for variable, value in zip(generators, rng, strict=True):
            variable.assign(keras.ops.convert_to_tensor(value, dtype=variable.dtype))


def restore_backup(model: Any, folder: str | os.PathLike) -> int:
    """Load the newest readable backup in `folder` into `model` (weights, optimizer, RNG).

    Returns the number of epochs it had finished, the `initial_epoch` for `fit`; 0 when
    `folder` holds no backup. A damaged newest backup is passed over with a
    `BackupWarning` naming it; when no backup reads, `BackupError` says what to do.
    """
    folder = Path(folder)
    damaged: list[tuple[Backup, str]] = []
    for backup in backups(folder):
        try:
            _load(model, backup)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            damaged.append((backup, f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"))
            continue
        if damaged:
            names = ", ".join(str(b.path) for b, _ in damaged)
            warnings.warn(
                f"The newest backup ({names}) could not be read ({damaged[0][1]}): it was "
                "cut short, probably by a kill or a full disk while it was being written. "
                f"Resuming from {backup.path} (epoch {backup.epoch}) instead; the epochs "
                "after it are trained again.",
                BackupWarning,
                stacklevel=2,
            )
        return backup.epoch
    if damaged:
        names = ", ".join(str(b.path) for b, _ in damaged)
        raise BackupError(
            f"Cannot resume: no backup in {folder} could be read ({names}; {damaged[0][1]}). "
            "It was cut short, probably by a kill or a full disk while it was being "
            "written. Start the run again with --overwrite (this replaces the run's "
            "outputs), or train into another --out to keep them."
        )
    return 0


def save_backup(model: Any, folder: str | os.PathLike, epoch: int) -> Path:
    """Write the backup of `model` after `epoch` finished epochs, atomically.

    Backups of later epochs (from before a resume) and all but the `KEEP` newest are
    removed once the new one is in place. Returns the new backup's folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"epoch-{epoch:04d}"
    partial = folder / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    ensure_room(folder, model, optimizer=True)
    try:
        partial.mkdir()
        with failed_writes_closed(partial):
            model.save_weights(partial / WEIGHTS)
        rng = [keras.ops.convert_to_numpy(v).tolist() for v in _generators(model)]
        (partial / STATE).write_text(json.dumps({"epoch": epoch, "rng": rng}))
        for path in (partial / WEIGHTS, partial / STATE, partial):
            _sync(path)
        if final.exists():  # a damaged one a resume passed over
            shutil.rmtree(final)
        os.replace(partial, final)
        _sync(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _prune(folder, epoch)
    return final


def _sync(path: Path) -> None:
    """Flush `path` (a file or a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(folder: Path, newest: int) -> None:
    kept = 0
    for backup in backups(folder):
        if backup.epoch <= newest and kept < KEEP and backup.path.is_dir():
            kept += 1
            continue
        if backup.path.is_dir():
            shutil.rmtree(backup.path, ignore_errors=True)
        else:  # the Keras layout, superseded
            for name in (LEGACY_WEIGHTS, LEGACY_STATE):
                for path in (folder / name, folder / f"{name}.bkp"):
                    path.unlink(missing_ok=True)
    for stray in folder.glob(".epoch-*.partial"):
        shutil.rmtree(stray, ignore_errors=True)


class EpochBackup(keras.callbacks.Callback):
    """Save a backup (`save_backup`) at the end of every epoch.

    Put it last in the callback list, so the backup holds what the other callbacks did
    in the epoch. Restore with `restore_backup` before `fit`, and pass what it returns
    as `initial_epoch`.

    Args:
        folder: the backup folder, e.g. `run/backup`.
    """

    def __init__(self, folder: str | os.PathLike):
        super().__init__()
        self.folder = Path(folder)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        save_backup(self.model, self.folder, epoch + 1)
