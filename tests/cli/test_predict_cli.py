"""`zoo-transfer predict` and `zoo-transfer evaluate` on a tiny trained model and real weights."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from zoo_transfer.cli import cli

NAMES = ["cat", "dog"]


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


def _write(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype("uint8")).save(path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder of 36-40 px PNGs (cat: reddish, dog: bluish, one gray) and a 32 px model
    trained on them for a few steps, saved with its labels embedded."""
    import keras

    import zoo_transfer
    from zoo_transfer.data import load_image
    from zoo_transfer.model_file import embed_labels

    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    data = root / "val"
    for c, name in enumerate(NAMES):
        for i in range(4):
            img = rng.uniform(0, 120, (36 + i, 40, 3))
            img[..., 0 if c == 0 else 2] += 130
            _write(data / name / f"{name}{i}.png", img)
    _write(data / "dog" / "gray.png", rng.uniform(0, 255, (33, 35)))  # grayscale file
    paths = sorted(data.rglob("*.png"))
    x = np.stack([load_image(p, (32, 32)) for p in paths])
    y = np.array([NAMES.index(p.parent.name) for p in paths])

    keras.utils.set_random_seed(0)
    model = zoo_transfer.build("mobilenet_v3_small", 2, weights=None, input_shape=(32, 32, 3))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, batch_size=9, verbose=0)
    path = root / "pets.keras"
    model.save(path)
    embed_labels(path, NAMES)
    return path, data, paths


def test_commands_are_registered(run):
    out = run("--help").output
    assert "predict" in out and "evaluate" in out


def test_predict_agrees_with_evaluate_per_sample(run, trained):
    model, data, paths = trained
    result = run("predict", model, *paths, "--top-k", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    predicted = json.loads(result.output)
    assert [p["path"] for p in predicted] == [str(p) for p in paths]

    result = run("evaluate", model, "--data", data, "--batch-size", "4", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    samples = {s["item"]: s for s in report["samples"]}
    assert len(samples) == len(paths) == 9
    for p in predicted:
        s = samples[p["path"]]
        top = p["top"][0]
        assert (top["class"], top["index"]) == (s["predicted"], s["predicted_index"])
        assert top["probability"] == pytest.approx(s["probability"], abs=1e-5)
    # the evaluate report is consistent with its own samples
    correct = sum(s["correct"] for s in report["samples"])
    assert report["accuracy"] == pytest.approx(correct / 9)
    assert np.array(report["confusion_matrix"]).sum() == 9
    assert [c["name"] for c in report["classes"]] == NAMES
    assert [c["support"] for c in report["classes"]] == [4, 5]


def test_predict_json_keys_and_table(run, trained):
    model, _, paths = trained
    rows = json.loads(run("predict", model, paths[0], "--format", "json").output)
    assert len(rows) == 1 and set(rows[0]) == {"path", "top"}
    assert len(rows[0]["top"]) == 2  # --top-k 5 clipped to 2 classes
    assert set(rows[0]["top"][0]) == {"rank", "class", "index", "probability"}
    assert sum(t["probability"] for t in rows[0]["top"]) == pytest.approx(1.0, abs=1e-5)
    lines = run("predict", model, paths[0]).output.splitlines()
    assert lines[0] == str(paths[0])
    assert lines[1].split()[1] == rows[0]["top"][0]["class"]


def test_evaluate_table(run, trained):
    model, data, _ = trained
    result = run("evaluate", model, "--data", data)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("accuracy ") and lines[0].endswith("/9)")
    assert [line.split()[0] for line in lines[3:5]] == NAMES


def test_zoo_name_with_real_weights_names_imagenet_classes(run, shared_data, tmp_path):
    weights = shared_data / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"
    sample = shared_data / "imagenet-sample"
    images = [sample / "n02391049_zebra.JPEG", sample / "n01820546_lorikeet.JPEG"]
    result = run("predict", "mobilenet.a025_224", *images, "--weights", weights)
    assert result.exit_code == 0, result.output
    blocks = result.output.strip().split("\n" + str(images[1]) + "\n")
    top5 = [[line.split()[1] for line in b.splitlines()[-5:]] for b in blocks]
    assert "zebra" in top5[0] and "lorikeet" in top5[1]
    assert "(class 340)" in result.output  # zebra's ImageNet index

    # evaluate with class folders named after the ImageNet classes
    for img, name in zip(images, ["zebra", "lorikeet"], strict=True):
        (tmp_path / name).mkdir()
        shutil.copy(img, tmp_path / name / img.name)
    args = ("evaluate", "mobilenet.a025_224", "--data", tmp_path, "--weights", weights)
    report = json.loads(run(*args, "--format", "json").output)
    assert report["num_samples"] == 2 and len(report["classes"]) == 1000
    assert {s["predicted"] for s in report["samples"]} == {"zebra", "lorikeet"}
    assert report["accuracy"] == 1.0


def test_errors_name_the_bad_value(run, trained, tmp_path):
    model, data, paths = trained
    result = run("predict", tmp_path / "missing.keras", paths[0])
    assert result.exit_code == 1 and "No model file at" in result.output
    result = run("predict", "mobilenett_v9", paths[0])
    assert result.exit_code == 2 and "Unknown model 'mobilenett_v9'" in result.output
    result = run("predict", model, tmp_path / "nope.png")
    assert result.exit_code == 2 and "does not exist" in result.output  # before loading
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    result = run("predict", model, bad)
    assert result.exit_code == 1 and "Cannot decode" in result.output
    (tmp_path / "val" / "horse").mkdir(parents=True)
    shutil.copy(paths[0], tmp_path / "val" / "horse" / "h.png")
    result = run("evaluate", model, "--data", tmp_path / "val")
    assert result.exit_code == 1 and "Subfolders ['horse']" in result.output


def test_help_of_the_new_commands_stays_tensorflow_free():
    probe = (
        "import sys\nfrom zoo_transfer.cli import cli\n"
        "for c in ('predict', 'evaluate'):\n"
        "    try:\n        cli.main([c, '--help'], standalone_mode=False)\n"
        "    except SystemExit:\n        pass\n"
        "print('HEAVY=' + ','.join(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--top-k" in proc.stdout and "--data" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="
