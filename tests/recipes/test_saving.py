"""A built model is a plain Keras model: `.keras` files load without zoo_transfer, safe mode on."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import zoo_transfer

LOADER = """
import sys, numpy as np, keras
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
x = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict(x, verbose=0))
print("ZOO_LOADED=" + str(any(m.startswith("zoo_transfer") for m in sys.modules)))
"""


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3_small"])
def test_keras_file_round_trip_in_a_fresh_process(fresh_keras, tmp_path, name):
    model = zoo_transfer.build(
        name, num_classes=3, weights=None, input_shape=(64, 64, 3), head=(8,)
    )
    x = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ZOO_LOADED=False" in proc.stdout
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-6)
