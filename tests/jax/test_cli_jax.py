"""The user's path on JAX without TensorFlow, from the shell: train -> evaluate -> predict
-> plain Keras, the demo, and `--strategy mirrored` as DataParallel over 2 CPU devices."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from user_shell import python, shell  # noqa: E402

PLAIN_KERAS = """
import json, sys
import keras, numpy as np
assert keras.backend.backend() == "jax"
x = np.load(sys.argv[1])
probs = [keras.saving.load_model(p, safe_mode=True).predict(x, verbose=0) for p in sys.argv[2:]]
assert "zoo_transfer" not in sys.modules and "tensorflow" not in sys.modules
print(json.dumps([np.asarray(p, "float64").tolist() for p in probs]))
"""


def plain_keras(x_npy: Path, *models: Path) -> list[np.ndarray]:
    """Each `.keras` file's probabilities for the images in `x_npy`, from plain Keras
    without zoo_transfer: one fresh interpreter loads them all."""
    out = json.loads(python(PLAIN_KERAS, str(x_npy), *map(str, models)))
    assert len(out) == len(models)
    return [np.asarray(probs) for probs in out]


@pytest.fixture(scope="module")
def trained(make_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("jax-user")
    data = make_folder(root / "data", per_class=24, classes=3)
    out = root / "run"
    proc = shell(
        "train", "digitnet", "--data", str(data), "--epochs", "2", "--batch-size", "8",
        "--unfreeze", "2:stage3", "--out", str(out),
    )  # fmt: skip
    return data, out, proc.stdout


def test_train_on_jax_writes_the_run_and_unfreezes(trained):
    data, out, log = trained
    assert json.loads((out / "labels.json").read_text()) == ["5", "6", "7"]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2
    assert history[0]["trainable_params"] < history[1]["trainable_params"]
    assert "GradualUnfreezing: epoch 2" in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_accuracy"] is not None and 0.0 <= metrics["val_accuracy"] <= 1.0
    for name in ("final.keras", "best.keras", "report.html"):
        assert (out / name).is_file()


def test_evaluate_predict_and_plain_keras_agree_on_jax(trained, tmp_path):
    data, out, _ = trained
    model = str(out / "final.keras")
    evaluated = json.loads(shell("evaluate", model, "--data", str(data), "--format", "json").stdout)
    assert evaluated["num_samples"] == 72
    images = sorted((data / "6").glob("*.png"))[:4]
    ours = json.loads(
        shell("predict", model, *map(str, images), "--format", "json", "--top-k", "3").stdout
    )
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in images])
    np.save(tmp_path / "x.npy", pixels.astype("float32"))
    (plain,) = plain_keras(tmp_path / "x.npy", out / "final.keras")
    assert plain.shape == (4, 3)
    for row, prediction in zip(plain, ours, strict=True):
        top = prediction["top"][0]
        assert ["5", "6", "7"][int(row.argmax())] == top["class"]
        assert row.max() == pytest.approx(top["probability"], abs=1e-4)
    # evaluate's per-image answers are predict's
    by_file = {Path(s["item"]).name: s for s in evaluated["samples"] if "/6/" in s["item"]}
    for path, prediction in zip(images, ours, strict=True):
        assert by_file[path.name]["predicted"] == prediction["top"][0]["class"]


def test_demo_on_jax_lands_in_the_tensorflow_band(tmp_path):
    """The same band as on TensorFlow (tests/job/test_demo.py): transfer >= 0.7, above scratch."""
    proc = shell("demo", "--out", str(tmp_path / "demo"), "--quiet", timeout=900)
    match = re.search(r"held-out accuracy: transfer ([\d.]+) vs from scratch ([\d.]+)", proc.stdout)
    assert match, proc.stdout
    transfer, scratch = float(match.group(1)), float(match.group(2))
    assert transfer >= 0.7 and transfer > scratch


def test_strategy_mirrored_is_data_parallel_over_two_devices(tmp_path):
    """DataParallel splits each batch over 2 CPU devices and reaches the weights one
    device reaches: a mean over the whole batch either way.

    `--final last`: final.keras holds the epoch's weights, trained under the strategy
    (by default it would hold the linear probe's, which wins on validation here and is
    fitted before the strategy's `fit`). `--similar`: the domain measurement, made before
    the strategy applies and checked by the `trained` run, is skipped.
    """
    flags = os.environ.get("XLA_FLAGS", "")  # the job's own (tests/no_tensorflow.py), and
    env = {"XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count=2".strip()}
    runs = {}
    for strategy in ("mirrored", "auto"):
        out = tmp_path / strategy
        args = ["train", "digitnet", "--data", "zoo:digits", "--epochs", "1", "--batch-size",
                "16", "--strategy", strategy, "--augment", "none", "--similar",
                "--final", "last", "--out", str(out)]  # fmt: skip
        old = dict(os.environ)
        os.environ.update(env)
        try:
            runs[strategy] = shell(*args, timeout=600).stdout
        finally:
            os.environ.clear()
            os.environ.update(old)
    assert "DataParallel over 2 devices" in runs["mirrored"]
    assert "DataParallel" not in runs["auto"]  # auto: only with several GPUs/TPUs
    x = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    mirrored, auto = plain_keras(
        tmp_path / "x.npy", tmp_path / "mirrored" / "final.keras", tmp_path / "auto" / "final.keras"
    )  # both models in one plain-Keras process
    classes = json.loads((tmp_path / "auto" / "labels.json").read_text())
    assert mirrored.shape == auto.shape == (6, len(classes))
    np.testing.assert_allclose(mirrored, auto, atol=2e-3)
