"""The out folder's safety: nothing the user made is lost, nothing half-written is left.

An existing out folder is refused unless `resume=True` (continue it) or
`overwrite=True` (replace a previous zoo-transfer run; a folder that is not one is never
deleted). A run holds `.zoo-transfer.lock` (`LOCK`), so two runs never share a folder.
What a run writes is listed in its manifest (`MANIFEST`), and `--overwrite` touches
only those names: it sets the earlier run aside in `.zoo-transfer-replaced`, deletes
it once the new run has finished its first epoch, and puts it back if the new run fails
before. JSON files are written whole or not at all (`_write_json`), and a full disk or
a read-only folder becomes one message naming the folder (`_write_failure`).

These rules live apart from the run itself (`zoo_transfer.job.runner`), which calls
them at its start, after each epoch and on failure.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from zoo_transfer.errors import BuildArgumentError, OutputFolderError, ZooTransferError
from zoo_transfer.job.config import JobConfig
from zoo_transfer.report import REPORT_FILES

_RUN_FILES = ("config.json", "history.json", "labels.json")
MANIFEST = "zoo-transfer-run.json"  # what a run writes in its out folder: all --overwrite removes
RUN_OUTPUTS = (
    *_RUN_FILES, "metrics.json", "probe.json", "probe.keras", "best.keras", "final.keras",
    "interrupted.keras",
    "backup", "features", MANIFEST, *REPORT_FILES,
)  # fmt: skip
LOCK = ".zoo-transfer.lock"  # held by the process training in the folder
_ASIDE = ".zoo-transfer-replaced"  # the earlier run, kept whole until the new one is running


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
        # epochs may grow; `chosen` only says why the first run chose what it did
        differ = [k for k in mine if k not in ("epochs", "chosen") and mine[k] != theirs[k]]
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
        pid = handle.read().strip()
        handle.close()
        raise _in_use(out, pid) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    _LOCKS[out.resolve()] = handle


def check_unlocked(out: Path) -> None:
    """`OutputFolderError` when another process holds `out`'s lock; nothing is created."""
    import fcntl

    if out.resolve() in _LOCKS or not (out / LOCK).is_file():
        return
    with open(out / LOCK) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(out, handle.read().strip()) from None


def _in_use(out: Path, pid: str) -> OutputFolderError:
    return OutputFolderError(
        f"{out} is in use: zoo-transfer (pid {pid or 'another process'}) is training there. "
        "Wait for it to finish (or stop it), or choose another --out."
    )


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
    from zoo_transfer.backup_folder import finished_epochs

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
        from zoo_transfer.backup_folder import finished_epochs

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
