"""The README's path as a new user runs it: train, evaluate, predict, plain Keras, --overwrite.

Every step is a new process through the installed console script, so nothing is
registered that the saved files do not carry themselves (0.1's models failed exactly
there while the in-process tests passed).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from user_shell import python, shell

TRAIN = ["train", "digitnet", "--batch-size", "8", "--quiet"]

# Loads a .keras file in a process that never imports zoo_transfer, with safe mode on,
# and prints its predictions for the images in an .npy file.
PLAIN_KERAS = """
import json, sys
import keras, numpy as np
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
probs = model.predict(np.load(sys.argv[2]), verbose=0)
assert "zoo_transfer" not in sys.modules, "zoo_transfer was imported"
print(json.dumps(np.asarray(probs, "float64").tolist()))
"""


PER_CLASS = 24


def _user_data(make_folder, root: Path) -> Path:
    """Three classes of digits, plus the junk a real folder has: hidden and __ folders."""
    data = make_folder(root / "data", per_class=PER_CLASS, classes=3)
    for junk in (".ipynb_checkpoints", "__MACOSX"):
        shutil.copytree(data / "5", data / junk)
    shutil.copy(data / "6" / "000.png", data / "5" / "._000.png")  # a macOS resource fork
    return data


@pytest.fixture(scope="module")
def trained(make_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    data = _user_data(make_folder, root)
    out = root / "run"
    shell(*TRAIN, "--data", str(data), "--epochs", "2", "--unfreeze", "1:stage3", "--out", str(out))
    return data, out


def test_hidden_folders_are_not_classes(trained):
    data, out = trained
    assert json.loads((out / "labels.json").read_text()) == ["5", "6", "7"]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2


@pytest.mark.parametrize("name", ["final.keras", "best.keras"])
def test_saved_models_load_in_plain_keras_with_the_same_predictions(trained, tmp_path, name):
    data, out = trained
    images = sorted((data / "6").glob("0*.png"))[:3]
    ours = json.loads(shell("predict", str(out / name), *map(str, images), "--format", "json",
                            "--top-k", "3").stdout)  # fmt: skip
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in images])
    np.save(tmp_path / "x.npy", pixels.astype("float32"))
    plain = np.asarray(json.loads(python(PLAIN_KERAS, str(out / name), str(tmp_path / "x.npy"))))
    assert plain.shape == (3, 3)
    for row, prediction in zip(plain, ours, strict=True):
        top = prediction["top"][0]
        assert ["5", "6", "7"][int(row.argmax())] == top["class"]
        assert row.max() == pytest.approx(top["probability"], abs=1e-4)


def test_evaluate_and_predict_agree_on_the_saved_model(trained):
    data, out = trained
    evaluated = json.loads(
        shell("evaluate", str(out / "final.keras"), "--data", str(data), "--format", "json").stdout
    )
    assert [c["name"] for c in evaluated["classes"]] == ["5", "6", "7"]
    assert (
        evaluated["num_samples"] == 3 * PER_CLASS
    )  # the hidden folders and ._ files are not samples
    # predict on several files, one of them unreadable: reported, the others predicted
    bad = out.parent / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    images = [data / "5" / "000.png", bad, data / "7" / "010.png"]
    proc = shell("predict", str(out / "final.keras"), *map(str, images), "--format", "json",
                 check=False)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "1 of 3 images could not be read" in proc.stderr and "broken.jpg" in proc.stderr
    predicted = json.loads(proc.stdout)
    assert [r["path"] for r in predicted] == [str(p) for p in images]
    assert predicted[1]["top"] == [] and "broken.jpg" in predicted[1]["error"]
    for row, name in ((predicted[0], "5/000.png"), (predicted[2], "7/010.png")):
        sample = next(s for s in evaluated["samples"] if s["item"].endswith(name))
        assert row["top"][0]["class"] == sample["predicted"]  # as evaluate saw it


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_resume_of_a_finished_run_says_so_and_changes_nothing(trained):
    data, out = trained
    before = _files(out)
    proc = shell(*TRAIN, "--data", str(data), "--epochs", "2", "--unfreeze", "1:stage3",
                 "--out", str(out), "--resume", check=False)  # fmt: skip
    assert proc.returncode != 0 and "nothing to resume" in proc.stderr, proc.stderr[-2000:]
    assert _files(out) == before


def test_a_second_process_on_the_same_out_folder_is_refused(trained):
    import fcntl
    import os

    data, out = trained
    before = _files(out)
    with open(out / ".zoo-transfer.lock", "a+") as lock:  # as a running zoo-transfer holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(str(os.getpid()))
        lock.flush()
        proc = shell(*TRAIN, "--data", str(data), "--epochs", "3", "--unfreeze", "1:stage3",
                     "--out", str(out), "--resume", check=False)  # fmt: skip
    (out / ".zoo-transfer.lock").unlink()
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert f"in use: zoo-transfer (pid {os.getpid()})" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _files(out) == before


REFUSALS = """
import json, sys
from zoo_transfer.cli import cli
for args in json.loads(sys.argv[1]):
    try:
        cli.main(args, standalone_mode=False)
    except SystemExit as exc:
        print("exit", exc.code)
print("HEAVY=" + ",".join(m for m in ("tensorflow", "keras", "jax") if m in sys.modules))
"""


def test_out_folder_refusals_come_before_tensorflow_loads(trained):
    import fcntl

    data, out = trained
    before = _files(out)
    again = [*TRAIN, "--data", str(data), "--epochs", "2", "--unfreeze", "1:stage3", "--out",
             str(out)]  # fmt: skip
    runs = [again, [*again, "--resume"], [*again, "--epochs", "3", "--resume"]]
    with open(out / ".zoo-transfer.lock", "a+") as lock:  # the third finds a run training there
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = subprocess.run([sys.executable, "-c", REFUSALS, json.dumps(runs)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    (out / ".zoo-transfer.lock").unlink()
    exits = [line for line in proc.stdout.splitlines() if line.startswith("exit")]
    assert len(exits) == 3 and "exit 0" not in exits, proc.stdout + proc.stderr[-2000:]
    assert "already exists" in proc.stderr and "nothing to resume" in proc.stderr
    assert "is in use" in proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY=", proc.stdout  # no TensorFlow
    assert _files(out) == before


def test_overwrite_keeps_the_users_files_and_a_failed_replacement_keeps_the_run(trained):
    data, out = trained
    (out / "my-notes.txt").write_text("mine")
    (out / "my-plots").mkdir()
    (out / "my-plots" / "a.png").write_bytes(b"png")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    # a typo in the schedule, then a weights file that does not exist: both fail, and the
    # earlier run is still whole, byte for byte
    for bad in (["--unfreeze", "1:stage33"], ["--weights", str(out / "missing.weights.h5")]):
        failed = shell(*TRAIN, "--data", str(data), "--epochs", "2", *bad, "--out", str(out),
                       "--overwrite", check=False)  # fmt: skip
        assert failed.returncode != 0
        assert "Traceback" not in failed.stderr, failed.stderr[-2000:]
        after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        assert after == before, set(before) ^ set(after)
        assert (out / "backup").is_dir() and not (out / ".zoo-transfer-replaced").exists()

    replaced = shell("train", "digitnet", "--batch-size", "8", "--data", str(data), "--epochs",
                     "1", "--out", str(out), "--overwrite")  # fmt: skip
    # stdout is a pipe, not a terminal: one line per epoch, no progress bar, no colour codes
    assert re.search(r"\d+/\d+ - \d+s .*loss: ", replaced.stdout), replaced.stdout[-1000:]
    assert "\x1b[" not in replaced.stdout and "━" not in replaced.stdout
    assert (out / "my-notes.txt").read_text() == "mine"
    assert (out / "my-plots" / "a.png").read_bytes() == b"png"
    assert len(json.loads((out / "history.json").read_text())) == 1  # the new run replaced it
    assert json.loads((out / "config.json").read_text())["epochs"] == 1
    assert not (out / ".zoo-transfer-replaced").exists()


def test_commands_print_no_tensorflow_start_up_lines(trained):
    import os
    import subprocess

    from user_shell import zoo_transfer_script

    data, out = trained
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [zoo_transfer_script(), "predict", str(out / "final.keras"), str(data / "5" / "000.png")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for noise in ("I0000", "E0000", "cuInit", "oneDNN", "absl"):
        assert noise not in proc.stderr, proc.stderr[-2000:]
