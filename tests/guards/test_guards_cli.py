"""`zoo-transfer train --l2-sp --wise-ft sweep --adabn` from the shell, as a user runs it:
the sweep's accuracies in metrics.json and the report, and a final.keras that plain Keras
loads in a fresh process and that scores on the validation images what metrics.json says."""

from __future__ import annotations

import json

import numpy as np
from e2e.user_shell import python, shell
from PIL import Image

TRAIN = ["train", "digitnet", "--batch-size", "8", "--quiet", "--epochs", "2",
         "--augment", "none"]  # fmt: skip

# Plain Keras, no zoo_transfer: the accuracy of a .keras file on images and labels (.npz).
PLAIN_ACCURACY = """
import sys
import keras, numpy as np
data = np.load(sys.argv[2])
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
pred = model.predict(data["x"], verbose=0).argmax(-1)
assert "zoo_transfer" not in sys.modules
print("ACCURACY", float(np.mean(pred == data["y"])))
"""


def _images(folder, classes):
    x, y = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).glob("*.png")):
            x.append(np.asarray(Image.open(path).convert("RGB"), "float32"))
            y.append(label)
    return np.stack(x), np.asarray(y)


def test_train_with_every_guard_from_the_shell(make_folder, tmp_path):
    train = make_folder(tmp_path / "train", per_class=8, classes=3)
    val = make_folder(tmp_path / "val", per_class=6, seed=1, classes=3)
    out = tmp_path / "run"
    done = shell(*TRAIN, "--data", str(train), "--validation", str(val), "--out", str(out),
                 "--l2-sp", "0.05", "--wise-ft", "sweep", "--adabn")  # fmt: skip

    config = json.loads((out / "config.json").read_text())
    assert (config["l2_sp"], config["wise_ft"], config["adabn"]) == (0.05, "sweep", True)
    metrics = json.loads((out / "metrics.json").read_text())
    wise = metrics["wise_ft"]
    assert wise["alphas"] == [0.0, 0.25, 0.5, 0.75, 1.0] and len(wise["val_accuracies"]) == 5
    assert wise["alpha"] in wise["alphas"] and wise["chosen_by"] == "validation sweep"
    best = wise["val_accuracies"][wise["alphas"].index(wise["alpha"])]
    assert best == max(wise["val_accuracies"]) == wise["val_accuracy"]
    assert metrics["val_accuracy"] == best
    assert f"WiSE-FT mix (alpha {wise['alpha']:g})" in done.stdout

    html = (out / "report.html").read_text()
    shown = ", ".join(
        f"{a:g}: {acc:.4f}" for a, acc in zip(wise["alphas"], wise["val_accuracies"], strict=True)
    )
    assert f"val_accuracy by alpha: {shown}" in html
    assert "AdaBN (--adabn)" in html and "L2-SP (--l2-sp 0.05)" in html

    labels = json.loads((out / "labels.json").read_text())
    x, y = _images(val, labels)
    np.savez(tmp_path / "val.npz", x=x, y=y)
    printed = python(PLAIN_ACCURACY, str(out / "final.keras"), str(tmp_path / "val.npz"))
    assert float(printed.split("ACCURACY")[-1]) == best
