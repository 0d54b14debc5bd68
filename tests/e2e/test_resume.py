"""A run stopped at any moment (Ctrl-C, or SIGKILL while a backup is written or mid-epoch),
then resumed, equals one that never stopped: the same per-epoch losses, with shuffling,
augmentation, progressive resizing and an unfreeze schedule on.

Each run is the installed console script in its own process, as a user runs it. One run
is stopped and resumed four times in a row, so every way of stopping is checked against
the same uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from user_shell import shell, zoo_transfer_script

EPOCHS = 6
TRAIN = [
    "train", "digitnet", "--batch-size", "8", "--quiet", "--epochs", str(EPOCHS),
    "--augment", "light", "--progressive", "32,40", "--unfreeze", "5:stage3", "--seed", "7",
]  # fmt: skip


def _history(out: Path) -> list[dict]:
    try:
        return json.loads((out / "history.json").read_text())
    except (OSError, ValueError):
        return []


def _ctrl_c_as_in_a_terminal() -> None:
    """In the child: Ctrl-C's default disposition, even when this test run ignores SIGINT
    (a background job of a shell without job control), which the child would inherit and,
    rightly, keep (tests/job/test_interrupt.py)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [zoo_transfer_script(), *TRAIN, "--data", str(data), "--out", str(out), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )  # fmt: skip


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be stopped:\n{proc.stderr.read()[-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("the run did not get there in time")
        time.sleep(0.005)


def _kill(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, "the run had already ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _backup(out: Path, epoch: int) -> Path:
    return out / "backup" / f"epoch-{epoch:04d}"


@pytest.fixture(scope="module")
def data(make_folder, tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("resume") / "data", per_class=24, classes=3)


@pytest.mark.early
def test_stopped_four_ways_and_resumed_it_equals_an_uninterrupted_run(data, tmp_path):
    whole = tmp_path / "whole"
    shell(*TRAIN, "--data", str(data), "--out", str(whole))
    out = tmp_path / "run"

    # 1. Ctrl-C during epoch 2: interrupted.keras, the resume command, exit status 130
    proc = _start(data, out)
    _wait_for(lambda: _backup(out, 1).is_dir(), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and "Traceback" not in err and "Error" not in err
    assert (out / "interrupted.keras").exists()

    # 2. kill -9 while the epoch-3 backup is being written (history.json comes just before)
    proc = _start(data, out, "--resume")
    _wait_for(lambda: len(_history(out)) >= 3, proc)
    _kill(proc)

    # 3. kill -9 in the middle of epoch 5
    proc = _start(data, out, "--resume")
    _wait_for(lambda: _backup(out, 4).is_dir(), proc)
    time.sleep(0.2)
    _kill(proc)
    assert len(_history(out)) < EPOCHS

    # 4. the newest backup cut short, as a full disk would leave it: named, the one
    #    before is used, and the epochs after it are trained again
    newest = max((out / "backup").glob("epoch-*"))
    weights = newest / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:4096])
    resumed = shell(*TRAIN, "--data", str(data), "--out", str(out), "--resume")
    assert newest.name in resumed.stderr and "could not be read" in resumed.stderr
    assert "Traceback" not in resumed.stderr

    got, want = _history(out), _history(whole)
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want] == list(range(1, EPOCHS + 1))
    for a, b in zip(got, want, strict=True):
        for key in ("loss", "val_loss", "accuracy", "trainable_params", "image_size"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), (a["epoch"], key)
    assert [r["image_size"] for r in got] == [32, 32, 32, 40, 40, 40]
    params = [r["trainable_params"] for r in got]
    assert params[3] == params[0] < params[4]  # stage3 trains from epoch 5
    assert not list((out / "backup").glob(".*partial"))  # cut backups are cleared away
    assert (out / "final.keras").is_file() and not (out / "interrupted.keras").exists()

    # every backup cut short: nothing to resume from, said clearly
    for backup in (out / "backup").glob("epoch-*"):
        (backup / "model.weights.h5").write_bytes(b"\x89HDF")
    failed = shell(
        *TRAIN, "--data", str(data), "--out", str(out), "--resume", "--epochs", "7", check=False
    )
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "Cannot resume" in failed.stderr and "--overwrite" in failed.stderr
