"""A run killed (SIGKILL) or stopped (Ctrl-C) at any moment, then resumed, equals one that
never stopped: same per-epoch losses with shuffling and augmentation on.

Each run is the installed console script in its own process, as a user runs it.
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

EPOCHS = 5
TRAIN = [
    "train", "digitnet", "--batch-size", "8", "--quiet", "--epochs", str(EPOCHS),
    "--augment", "light", "--unfreeze", "3:stage3", "--seed", "7",
]  # fmt: skip


def _history(out: Path) -> list[dict]:
    try:
        return json.loads((out / "history.json").read_text())
    except (OSError, ValueError):
        return []


def _start(data: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [zoo_transfer_script(), *TRAIN, "--data", str(data), "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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


@pytest.fixture(scope="module")
def uninterrupted(make_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = make_folder(root / "data", per_class=24, classes=3)
    out = root / "whole"
    shell(*TRAIN, "--data", str(data), "--out", str(out))
    return data, _history(out)


def _assert_same_epochs(resumed: list[dict], whole: list[dict]) -> None:
    assert [r["epoch"] for r in resumed] == [r["epoch"] for r in whole]
    for a, b in zip(resumed, whole, strict=True):
        for key in ("loss", "val_loss", "accuracy", "trainable_params"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), (a["epoch"], key)


@pytest.mark.parametrize(
    "moment",
    ["while_saving_epoch_2", "mid_epoch_3"],
)
def test_kill_9_then_resume_equals_an_uninterrupted_run(uninterrupted, tmp_path, moment):
    data, whole = uninterrupted
    out = tmp_path / "run"
    proc = _start(data, out)
    if moment == "while_saving_epoch_2":  # history.json is written just before the backup
        _wait_for(lambda: len(_history(out)) >= 2, proc)
    else:
        _wait_for(lambda: (out / "backup" / "epoch-0002").is_dir(), proc)
        time.sleep(0.2)  # into epoch 3
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(_history(out)) < EPOCHS
    resumed = shell(*TRAIN, "--data", str(data), "--out", str(out), "--resume")
    assert "Traceback" not in resumed.stderr
    _assert_same_epochs(_history(out), whole)
    assert not list((out / "backup").glob(".*partial"))  # the cut backup was cleared away


def test_ctrl_c_then_resume_equals_an_uninterrupted_run(uninterrupted, tmp_path):
    data, whole = uninterrupted
    out = tmp_path / "run"
    proc = _start(data, out)
    _wait_for(lambda: (out / "backup" / "epoch-0001").is_dir(), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and "Traceback" not in err and "Error" not in err
    assert (out / "interrupted.keras").exists()
    shell(*TRAIN, "--data", str(data), "--out", str(out), "--resume")
    _assert_same_epochs(_history(out), whole)
    assert not (out / "interrupted.keras").exists()


def test_a_truncated_backup_is_named_and_the_run_resumes_from_the_one_before(
    uninterrupted, tmp_path
):
    data, whole = uninterrupted
    out = tmp_path / "run"
    proc = _start(data, out)
    _wait_for(lambda: (out / "backup" / "epoch-0003").is_dir(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    newest = max((out / "backup").glob("epoch-*"))
    weights = newest / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:4096])  # as a full disk would leave it
    resumed = shell(*TRAIN, "--data", str(data), "--out", str(out), "--resume")
    assert newest.name in resumed.stderr and "could not be read" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    _assert_same_epochs(_history(out), whole)

    for backup in (out / "backup").glob("epoch-*"):  # now every backup is cut short
        (backup / "model.weights.h5").write_bytes(b"\x89HDF")
    failed = shell(
        *TRAIN, "--data", str(data), "--out", str(out), "--resume", "--epochs", "6", check=False
    )
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "Cannot resume" in failed.stderr and "--overwrite" in failed.stderr
