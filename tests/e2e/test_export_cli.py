"""`zoo-transfer export` from the shell, on a model `zoo-transfer train` wrote: the ONNX
export, run by onnxruntime in a fresh interpreter, predicts what the `.keras` file
predicts when plain Keras loads it; existing out folders and missing packages are
clear errors that keep every file."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from user_shell import python, shell, zoo_transfer_script

COMPARE = """
import sys, json, numpy as np
assert "zoo_transfer" not in sys.modules
import keras, onnxruntime as ort
model = keras.saving.load_model(sys.argv[1])
side = model.input_shape[1] or json.load(open(sys.argv[2] + "/export.json"))["input"]["side"]
x = np.random.default_rng(0).uniform(0, 255, (6, side, side, 3)).astype("float32")
s = ort.InferenceSession(sys.argv[2] + "/model.onnx", providers=["CPUExecutionProvider"])
got = s.run(None, {s.get_inputs()[0].name: x})[0]
want = keras.ops.convert_to_numpy(model(x, training=False))
print(json.dumps({"diff": float(abs(got - want).max()), "shape": list(got.shape)}))
"""


@pytest.fixture(scope="module")
def final_keras(make_folder, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export_cli")
    data = make_folder(root / "data", per_class=12, classes=3)
    out = root / "run"
    shell("train", "digitnet", "--data", str(data), "--out", str(out), "--epochs", "1",
          "--batch-size", "8", "--quiet")  # fmt: skip
    return out / "final.keras"


def test_export_onnx_from_the_shell_predicts_like_the_keras_file(final_keras, tmp_path):
    out = tmp_path / "onnx"
    proc = shell("export", str(final_keras), "--format", "onnx", "--out", str(out))
    assert "Checked in its runtime" in proc.stdout and "same top class on 100%" in proc.stdout
    result = json.loads(python(COMPARE, str(final_keras), str(out)).strip().splitlines()[-1])
    assert result["diff"] <= 1e-4 and result["shape"] == [6, 3]
    labels = (out / "labels.txt").read_text().splitlines()
    assert labels == json.loads((out / "export.json").read_text())["class_names"]
    assert len(labels) == 3


def test_existing_out_folders_and_bad_options_are_clear_errors(final_keras, tmp_path):
    out = tmp_path / "deploy"
    shell("export", str(final_keras), "--format", "tfjs", "--out", str(out))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    again = shell("export", str(final_keras), "--format", "tfjs", "--out", str(out), check=False)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    replaced = shell("export", str(final_keras), "--format", "litert", "--out", str(out),
                     "--overwrite")  # fmt: skip
    assert "litert" in replaced.stdout
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "labels.txt", "model.tflite"]

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    refused = shell("export", str(final_keras), "--format", "onnx", "--out", str(mine),
                    "--overwrite", check=False)  # fmt: skip
    assert refused.returncode == 1 and "did not write" in refused.stderr
    assert (mine / "thesis.tex").read_text() == "keep me"

    wrong = shell("export", str(final_keras), "--format", "onnx", "--quantize", "dynamic",
                  "--out", str(tmp_path / "q"), check=False)  # fmt: skip
    assert wrong.returncode == 2 and "litert only" in wrong.stderr
    assert not (tmp_path / "q").exists()


def test_a_missing_runtime_names_the_extra(final_keras, tmp_path):
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'onnxruntime':\n"
        "            raise ModuleNotFoundError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(blocker), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [zoo_transfer_script(), "export", str(final_keras), "--format", "onnx", "--out",
         str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "onnxruntime" in proc.stderr and "pip install 'zoo-transfer[export]'" in proc.stderr
    assert not (tmp_path / "o").exists()
