"""The TF.js export needs no TensorFlow: on the JAX backend, with TensorFlow made
unimportable, a model is exported and read back with the same outputs, and the formats
that do need TensorFlow say so before writing anything."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from no_tensorflow import no_tensorflow_env

PROGRAM = r"""
import json, sys

import keras, numpy as np
import zoo_transfer
from zoo_transfer.exports import export, keras_outputs

out = sys.argv[1]
keras.utils.set_random_seed(0)
model = zoo_transfer.build("digitnet", 4, head_stages=2, pooling="avgmax")
x = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
result = export(model, out + "/tfjs", "tfjs", class_names=list("abcd"))
again = zoo_transfer.build("digitnet", 4, head_stages=2, pooling="avgmax",
                           weights=out + "/tfjs")
try:
    export(model, out + "/onnx", "onnx", class_names=list("abcd"))
    refused = None
except Exception as exc:
    refused = f"{type(exc).__name__}: {exc}"
print("RESULT=" + json.dumps({
    "backend": keras.backend.backend(),
    "diff": float(np.abs(keras_outputs(again, x) - keras_outputs(model, x)).max()),
    "labels": open(out + "/tfjs/labels.txt").read().split(),
    "files": result.files,
    "refused": refused,
    "tensorflow_loaded": "tensorflow" in sys.modules,
}))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_tfjs_export_on_jax_without_tensorflow(tmp_path):
    env = no_tensorflow_env("jax")
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT=")][-1]
    out = json.loads(line[len("RESULT=") :])
    assert out["backend"] == "jax" and out["tensorflow_loaded"] is False
    assert out["diff"] <= 1e-5  # the trained head came back with the backbone
    assert out["labels"] == ["a", "b", "c", "d"]
    assert out["files"] == ["group1-shard1of1.bin", "labels.txt", "model.json"]
    # ONNX needs TensorFlow: a clear error, nothing written
    assert out["refused"] is not None and "tensorflow" in out["refused"].lower()
    assert not (tmp_path / "onnx").exists()
