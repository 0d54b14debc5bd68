"""Shared by the guard tests: a small digits task, and the plain-Keras check in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Loads each .keras file in a process that never imports zoo_transfer (safe mode on) and
# prints its predictions for the images in an .npy file.
PLAIN_KERAS = """
import json, sys
import keras, numpy as np
x = np.load(sys.argv[1])
out = [np.asarray(keras.saving.load_model(p, compile=False).predict(x, verbose=0), "float64")
       .tolist() for p in sys.argv[2:]]
assert "zoo_transfer" not in sys.modules, "zoo_transfer was imported"
print(json.dumps(out))
"""


def plain_keras_predictions(paths: list[Path], images: np.ndarray, tmp: Path) -> list[np.ndarray]:
    """Each model file's predictions for `images`, loaded by plain Keras in a new process."""
    np.save(tmp / "images.npy", np.asarray(images, "float32"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_KERAS, str(tmp / "images.npy"), *map(str, paths)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [np.asarray(p) for p in json.loads(proc.stdout.strip().splitlines()[-1])]


@pytest.fixture(name="plain_keras_predictions")
def plain_keras_predictions_fixture():
    return plain_keras_predictions


@pytest.fixture(scope="session")
def digits():
    """Digits 5-9 (never seen by DigitNet's pretraining) at 32 px: 40 to train, 40 to check."""
    from zoo_transfer.recipes.digitnet import demo_digits

    x, y, xt, yt, _ = demo_digits(seed=0, train_per_class=8)
    return x.astype("float32"), y, xt[:40].astype("float32"), yt[:40]


@pytest.fixture
def keras_session():
    """A cleared Keras session (cheaper than `fresh_keras`: names need not be shifted here)."""
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    return keras
