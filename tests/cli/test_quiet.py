"""The commands' TensorFlow import: quiet, and without Keras' optional start-up hooks."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

PROBE = """
import sys
from zoo_transfer.cli._quiet import import_tensorflow_quietly
import_tensorflow_quietly()
names = ("jax", "sklearn", "matplotlib.pyplot")
print("DURING=" + ",".join(n for n in names if n in sys.modules))
import keras
import jax, sklearn, matplotlib.pyplot  # still importable afterwards
print("AFTER=" + ",".join(n for n in names if sys.modules.get(n) is not None))
print("BACKEND=" + keras.backend.backend())
"""


@pytest.mark.skipif(
    any(importlib.util.find_spec(n) is None for n in ("jax", "sklearn", "matplotlib")),
    reason="needs jax, scikit-learn and matplotlib installed (the [test] extra has them)",
)
def test_tensorflow_loads_without_jax_sklearn_and_pyplot_which_stay_importable():
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    env.pop("ZOO_TRANSFER_VERBOSE", None)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines == ["DURING=", "AFTER=jax,sklearn,matplotlib.pyplot", "BACKEND=tensorflow"]
