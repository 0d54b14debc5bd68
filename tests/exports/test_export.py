"""Every export format, run in its own runtime on real images, gives the Keras model's
predictions to 1e-4; bad input fails before anything is written.

The model: the shared real MobileNet 0.25 ImageNet weights at 96 px with a 10-class
three-stage avg+max head, saved as a `.keras` file with its class names. The images:
the shared Fashion-MNIST validation images, read as `predict` reads them. Each runtime
runs in a fresh interpreter that never imports zoo_transfer (TensorFlow for SavedModel,
onnxruntime, the LiteRT interpreter) or in Node with @tensorflow/tfjs.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer.errors import ArgumentError, ExportError, OutputFolderError
from zoo_transfer.exports import TOLERANCE, export, keras_outputs

SIDE = 96
HERE = Path(__file__).resolve().parent
RUNTIME = {
    "saved_model": """
import sys, json, numpy as np, tensorflow as tf
x = np.load(sys.argv[2])
loaded = tf.saved_model.load(sys.argv[1])
print(json.dumps(loaded.serve(x).numpy().tolist()))
""",
    "onnx": """
import sys, json, numpy as np, onnxruntime as ort
x = np.load(sys.argv[2])
s = ort.InferenceSession(sys.argv[1] + "/model.onnx", providers=["CPUExecutionProvider"])
print(json.dumps(s.run(None, {s.get_inputs()[0].name: x})[0].tolist()))
""",
    "litert": """
import sys, json, numpy as np
from ai_edge_litert.interpreter import Interpreter
x = np.load(sys.argv[2])
it = Interpreter(model_path=sys.argv[1] + "/model.tflite")
d = it.get_input_details()[0]
it.resize_tensor_input(d["index"], x.shape); it.allocate_tensors()
it.set_tensor(d["index"], x); it.invoke()
print(json.dumps(it.get_tensor(it.get_output_details()[0]["index"]).tolist()))
""",
}
GUARD = "import sys\nassert 'zoo_transfer' not in sys.modules\n"


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """(.keras path, class names, real images (n, 96, 96, 3), the model's outputs)."""
    import keras

    from zoo_transfer.data import read_image
    from zoo_transfer.input_spec import InputSpec
    from zoo_transfer.saving import save_for_inference

    keras.utils.set_random_seed(3)
    weights = shared_data / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"
    val = shared_data / "fashion-mnist-small" / "val"
    names = sorted(p.name for p in val.iterdir() if p.is_dir())
    model = zoo_transfer.build(
        "mobilenet.a025_224", len(names), weights=str(weights), input_shape=(SIDE, SIDE, 3),
        head_stages=3, pooling="avgmax",
    )  # fmt: skip
    # a head with outputs far from uniform, so equal predictions mean something
    logits = model.get_layer("head_logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel * 8.0, bias])
    spec = InputSpec.from_card(zoo_transfer.get_card("mobilenet.a025_224"), SIDE)
    files = [sorted((val / n).iterdir())[0] for n in names]
    files += [sorted((val / n).iterdir())[1] for n in names[:6]]
    images = np.stack([read_image(f, spec) for f in files]).astype("float32")
    path = tmp_path_factory.mktemp("export") / "final.keras"
    save_for_inference(model, path, class_names=names, input_spec=spec)
    return path, names, images, keras_outputs(model, images)


def _run_in_runtime(fmt: str, folder: Path, images: np.ndarray, tmp: Path) -> np.ndarray:
    np.save(tmp / "x.npy", images)
    proc = subprocess.run(
        [sys.executable, "-c", GUARD + RUNTIME[fmt], str(folder), str(tmp / "x.npy")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.asarray(json.loads(proc.stdout.strip().splitlines()[-1]), "float32")


@pytest.mark.parametrize("fmt", ["saved_model", "onnx", "litert"])
def test_each_format_predicts_like_keras_in_its_own_runtime(fmt, trained, tmp_path):
    path, names, images, expected = trained
    out = tmp_path / fmt
    result = export(path, out, fmt, check_images=images)
    got = _run_in_runtime(fmt, out, images, tmp_path)
    assert got.shape == expected.shape == (len(images), len(names))
    assert np.max(np.abs(got - expected)) <= TOLERANCE
    assert expected.max(axis=1).mean() > 0.5  # confident outputs: the comparison has teeth
    assert (out / "labels.txt").read_text().splitlines() == names
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["class_names"] == names and manifest["input"]["side"] == SIDE
    assert result.max_difference <= TOLERANCE and result.top1_agreement == 1.0
    assert result.checked == len(images)


@pytest.fixture(scope="session")
def tfjs_node(tmp_path_factory) -> Path:
    """node_modules with @tensorflow/tfjs, installed once (npm reaches its registry here)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed: the TF.js runtime check needs them")
    cache = Path(
        os.environ.get("ZOO_TRANSFER_NPM_CACHE", Path.home() / ".cache" / "zoo-transfer-tests")
    )
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:  # two xdist workers: one installs
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cache / "node_modules" / "@tensorflow" / "tfjs").is_dir():
            proc = subprocess.run(
                ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(cache),
                 "@tensorflow/tfjs@4"],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            if proc.returncode != 0:
                pytest.skip(f"npm could not install @tensorflow/tfjs: {proc.stderr[-500:]}")
    return cache / "node_modules"


def test_tfjs_export_predicts_like_keras_in_node_and_round_trips(trained, tfjs_node, tmp_path):
    path, names, images, expected = trained
    out = tmp_path / "tfjs"
    export(path, out, "tfjs")
    images.astype("<f4").tofile(tmp_path / "x.bin")
    proc = subprocess.run(
        ["node", str(HERE / "tfjs_predict.js"), str(out), str(tmp_path / "x.bin"),
         str(len(images)), str(SIDE)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "NODE_PATH": str(tfjs_node)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    got = np.asarray(result["outputs"], "float32")
    assert np.max(np.abs(got - expected)) <= TOLERANCE
    assert result["labels"] == names

    # zoo-transfer's own TF.js reader: the same model back, head included
    again = zoo_transfer.build(
        "mobilenet.a025_224", len(names), weights=str(out), input_shape=(SIDE, SIDE, 3),
        head_stages=3, pooling="avgmax",
    )  # fmt: skip
    assert np.max(np.abs(keras_outputs(again, images) - expected)) <= TOLERANCE
    # another number of classes: the backbone comes back, the head is new
    other = zoo_transfer.build(
        "mobilenet.a025_224", 3, weights=str(out), input_shape=(SIDE, SIDE, 3),
        head_stages=3, pooling="avgmax",
    )  # fmt: skip
    assert keras_outputs(other, images).shape == (len(images), 3)


def test_litert_quantization_shrinks_the_file_and_keeps_most_answers(trained, tmp_path):
    path, names, images, expected = trained
    plain = export(path, tmp_path / "f32", "litert", check_images=images)
    for mode, shrink in (("dynamic", 2.5), ("float16", 1.6)):
        q = export(path, tmp_path / mode, "litert", quantize=mode, check_images=images)
        assert q.size_bytes * shrink < plain.size_bytes, (mode, q.size_bytes, plain.size_bytes)
        got = _run_in_runtime("litert", tmp_path / mode, images, tmp_path)
        assert abs(q.max_difference - float(np.max(np.abs(got - expected)))) < 1e-6
        assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.75
        assert json.loads((tmp_path / mode / "export.json").read_text())["quantize"] == mode


def test_a_layer_tfjs_cannot_hold_fails_before_writing(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.LayerNormalization(name="norm")(inputs)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    with pytest.raises(ExportError, match=r"norm \(LayerNormalization.*pool .*keepdims"):
        export(model, tmp_path / "out", "tfjs", class_names=[str(i) for i in range(3)])
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no partial folder left behind


def test_out_folders_are_never_lost(trained, tmp_path):
    path, *_ = trained
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(OutputFolderError, match="--overwrite"):
        export(path, mine, "tfjs")
    with pytest.raises(OutputFolderError, match="did not write"):
        export(path, mine, "tfjs", overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    out = tmp_path / "out"
    export(path, out, "tfjs")
    first = (out / "model.json").read_bytes()
    with pytest.raises(OutputFolderError, match="already exists"):
        export(path, out, "tfjs")
    (out / "extra.txt").write_text("added by the user")
    with pytest.raises(OutputFolderError, match="extra.txt"):
        export(path, out, "tfjs", overwrite=True)
    (out / "extra.txt").unlink()
    export(path, out, "tfjs", overwrite=True, class_names=[f"c{i}" for i in range(10)])
    assert (out / "labels.txt").read_text().splitlines()[0] == "c0"
    assert (out / "model.json").read_bytes() != first  # the new metadata
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "out"]


def test_bad_arguments_name_the_choices(trained, tmp_path):
    path, *_ = trained
    with pytest.raises(ArgumentError, match="saved_model, onnx, litert, tfjs"):
        export(path, tmp_path / "o", "coreml")
    with pytest.raises(ArgumentError, match="litert format only"):
        export(path, tmp_path / "o", "onnx", quantize="dynamic")
    with pytest.raises(ArgumentError, match="dynamic, float16"):
        export(path, tmp_path / "o", "litert", quantize="int4")
    assert not (tmp_path / "o").exists()
