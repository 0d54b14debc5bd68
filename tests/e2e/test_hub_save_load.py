"""Models built on keras-hub presets, trained, saved and loaded in plain Keras; and
`zoo-transfer train PRESET_FOLDER` from the shell (a keras-hub preset as MODEL).

The loading process imports neither zoo_transfer nor anything but Keras (keras-hub's
classes deserialise through Keras, which imports keras-hub itself), in safe mode. One
loading process serves every model: each process that imports keras-hub costs seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from user_shell import shell

import zoo_transfer
from zoo_transfer.cli import cli
from zoo_transfer.model_file import read_input_spec

pytest.importorskip("keras_hub", reason="keras-hub (the hub extra) is not installed")

LOAD = """
import json, sys
import numpy as np
import keras
out = {}
for name in sys.argv[1].split(","):
    model = keras.saving.load_model(name + ".keras")  # safe mode
    out[name] = model.predict(np.load(name + ".npy"), verbose=0).tolist()
out["imported zoo_transfer"] = any(m.startswith("zoo_transfer") for m in sys.modules)
print(json.dumps(out))
"""


def _train_from_the_shell(preset, make_folder, tmp_path):
    """`zoo-transfer train PRESET_FOLDER` (LP-FT, block2 unfrozen at epoch 2, progressive
    resizing 28 -> 42 px: a 2x2 then a 3x3 patch grid, the model rebuilt between), then
    `predict` on images at the model's side: `(final.keras, images, predict's answers)`."""
    data = make_folder(tmp_path / "data", per_class=10, classes=3)
    out = tmp_path / "shell-run"
    shell("train", str(preset), "--data", str(data), "--epochs", "2", "--batch-size", "8",
          "--unfreeze", "2:block2", "--progressive", "28,42", "--quiet",
          "--out", str(out))  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == str(preset)  # --resume measures the same card again
    history = json.loads((out / "history.json").read_text())
    params = [r["trainable_params"] for r in history]
    assert len(params) == 2 and params[0] < params[1]  # block2 trains from epoch 2
    assert [r["image_size"] for r in history] == [28, 42]
    assert [r["val_image_size"] for r in history] == [28, 42]  # the size each build takes
    assert all(np.isfinite(r["val_accuracy"]) for r in history)
    assert json.loads((out / "labels.json").read_text()) == ["5", "6", "7"]
    model = out / "final.keras"
    side = read_input_spec(model).side  # images at it: predict and Keras see one set of pixels
    assert side == 42 and read_input_spec(out / "best.keras").side == 42
    images = []
    for i, source in enumerate(sorted((data / "7").glob("*.png"))[:3]):
        images.append(tmp_path / f"seven{i}.png")
        Image.open(source).convert("RGB").resize((side, side)).save(images[-1])
    answers = json.loads(shell("predict", str(model), *map(str, images), "--format", "json").stdout)
    x = np.stack([np.asarray(Image.open(p)) for p in images]).astype("float32")
    return model, x, answers


def test_trained_hub_models_load_in_plain_keras(tmp_path, hub_presets, make_folder):
    import keras

    shell_model, shell_x, answers = _train_from_the_shell(
        hub_presets["dinov2"], make_folder, tmp_path
    )
    (tmp_path / "shell.keras").symlink_to(shell_model)
    np.save(tmp_path / "shell.npy", shell_x)
    saved = []
    for family, kwargs in (  # every family (keras-hub 0.32 cannot reload ViT and DeiT
        ("dinov2", {"cut": "block2", "head_stages": 2}),  # layers unmended: recipes._hub)
        ("resnet", {}),
        ("siglip", {"head_stages": 2}),  # its pooled embedding and its last block's mean
        ("vit", {}),
        ("deit", {}),
        ("clip", {"pooling": "cls_mean"}),
        ("mobilenet", {}),
        ("efficientnet", {}),
    ):
        card = zoo_transfer.card_from_preset(hub_presets[family], name=f"e2e_{family}.test")
        zoo_transfer.register_model(card, override=True)
        model = zoo_transfer.build(
            card.name, num_classes=2, weights=str(hub_presets[family]), **kwargs
        )
        x = np.random.default_rng(1).uniform(0, 255, (6, *card.input_size)).astype("float32")
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        model.fit(x, np.array([0, 1] * 3), epochs=1, verbose=0)
        model.save(tmp_path / f"{family}.keras")
        np.save(tmp_path / f"{family}.npy", x)
        saved.append((family, model.predict(x, verbose=0)))
    run = subprocess.run(
        [sys.executable, "-c", LOAD, ",".join(["shell"] + [f for f, _ in saved])],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert loaded["imported zoo_transfer"] is False
    for family, expected in saved:
        np.testing.assert_allclose(np.array(loaded[family]), expected, atol=1e-5)
    plain = np.array(loaded["shell"])
    assert plain.shape == (3, 3)
    for row, answer in zip(plain, answers, strict=True):  # predict's answers are plain Keras'
        top = answer["top"][0]
        assert ["5", "6", "7"][int(row.argmax())] == top["class"]
        assert row.max() == pytest.approx(top["probability"], abs=1e-4)


def test_a_transformer_refuses_sizes_off_its_patch_grid_and_a_folder_must_be_a_preset(
    hub_presets, make_folder, tmp_path
):
    """Refused before the out folder exists (argument errors: in-process is enough)."""
    data = make_folder(tmp_path / "data", per_class=4, classes=2)
    runs = [
        ([str(hub_presets["vit"]), "--progressive", "32,40"], "40 px is not a multiple of 16"),
        ([str(hub_presets["vit"]), "--progressive", "32,48", "--wise-ft", "0.5"], "--wise-ft"),
        ([str(data)], "is not a keras-hub preset folder: it has no config.json"),
    ]
    for i, (args, says) in enumerate(runs):
        out = tmp_path / f"out{i}"
        result = CliRunner().invoke(
            cli, ["train", *args, "--data", str(data), "--epochs", "2", "--out", str(out)]
        )
        assert result.exit_code == 2, result.output
        assert says in result.output and "Traceback" not in result.output
        assert not out.exists()
