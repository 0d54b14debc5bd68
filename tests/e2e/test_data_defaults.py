"""`zoo-transfer train MODEL --data DIR` with no other options takes its epochs and its
image size from the data, says why, saves both, and a resumed run keeps them.

Every step is a new process through the installed console script.
"""

from __future__ import annotations

import json

import pytest
from user_shell import python, shell

MODEL = "mobilenet.a025_224"  # the card says 224 px; the digits are 32 px

INPUT_SHAPE = """
import sys
import keras
model = keras.saving.load_model(sys.argv[1])
assert "zoo_transfer" not in sys.modules
print(tuple(model.input_shape))
"""


@pytest.fixture(scope="module")
def folder(make_folder, tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("defaults") / "digits", per_class=10, classes=3)


def test_epochs_and_size_come_from_the_data_and_a_resumed_run_keeps_them(folder, tmp_path):
    out = tmp_path / "run"
    args = ("train", MODEL, "--data", str(folder), "--weights", "none", "--batch-size", "8",
            "--quiet", "--out", str(out))  # fmt: skip
    stdout = shell(*args).stdout
    # 30 images, 20% for validation: 24 train
    assert "epochs: 24 training images (< 5,000): 5 epochs after the linear probe" in stdout
    assert "image size: the images are small (typically 32 px): trained at 128 px" in stdout
    config = json.loads((out / "config.json").read_text())
    assert (config["epochs"], config["image_size"]) == (5, 128)
    assert set(config["chosen"]) == {"epochs", "image_size"}
    assert len(json.loads((out / "history.json").read_text())) == 5
    shape = python(INPUT_SHAPE, str(out / "final.keras")).split("\n")[-2]
    assert shape == "(None, 128, 128, 3)"
    assert "trained at 128 px" in (out / "report.html").read_text()

    # --resume with more epochs: the size stays what the first run chose
    shell(*args, "--resume", "--epochs", "6")
    config = json.loads((out / "config.json").read_text())
    assert (config["epochs"], config["image_size"]) == (6, 128)
    assert len(json.loads((out / "history.json").read_text())) == 6
    assert python(INPUT_SHAPE, str(out / "final.keras")).split("\n")[-2] == "(None, 128, 128, 3)"


def test_given_options_win_over_the_data(folder, tmp_path):
    out = tmp_path / "given"
    stdout = shell("train", MODEL, "--data", str(folder), "--weights", "none", "--epochs", "1",
                   "--image-size", "96", "--batch-size", "8", "--quiet", "--out",
                   str(out)).stdout  # fmt: skip
    assert not [line for line in stdout.splitlines() if line.startswith(("epochs:", "image size:"))]
    config = json.loads((out / "config.json").read_text())
    assert (config["epochs"], config["image_size"], config["chosen"]) == (1, 96, {})
