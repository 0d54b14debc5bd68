"""Pretrain the DigitNet demo backbone on digits 0-4 and write the package's demo assets.

Writes, under `zoo_transfer/assets/`:

- `digits.npz`: the 1797 8x8 images (uint8, 0-16) and labels of scikit-learn's
  `load_digits`, a copy of the test part of the UCI "Optical Recognition of Handwritten
  Digits" data set (Alpaydin and Kaynak, 1998; https://doi.org/10.24432/C50P49),
  licensed CC BY 4.0.
- `digitnet_digits04.weights.h5`: DigitNet pretrained on 80% of the digits 0-4 (the
  `zoo_transfer.recipes.digitnet.digits_task` split with seed 0). Pretext: 40 classes,
  each digit under the 8 symmetries of the square (rotation prediction on top of the
  labels), with light shift and zoom augmentation; the shipped 5-class top is the
  pretext classifier's upright columns. Digits 5-9 are never seen: they are the
  offline transfer task.

Prints the held-out accuracy on the other 20% of digits 0-4 (upright), the parameter
counts and the sha256 of the weights file: copy them into `registry/cards/zoo.json` and
the hash into `WEIGHTS_HASH` in `recipes/digitnet.py`. Deterministic on CPU (two runs
give the same sha256); about 35 s on two cores. scikit-learn is needed by this script
only (`pip install scikit-learn`).

```bash
python scripts/pretrain_demo_backbone.py [--epochs 10] [--seed 0]
```
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "zoo_transfer" / "assets"
SYMMETRIES = tuple((turn, transpose) for transpose in (False, True) for turn in range(4))


def write_digits(path: Path) -> None:
    from sklearn.datasets import load_digits  # local copy inside scikit-learn: no network

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # ints 0-16
    labels = digits.target.astype(np.uint8)
    assert images.shape == (1797, 8, 8) and images.max() == 16
    np.savez_compressed(path, images=images, labels=labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.monotonic()

    from zoo_transfer.recipes import digitnet as demo

    ASSETS.mkdir(exist_ok=True)
    write_digits(ASSETS / demo.DIGITS_FILE)

    import keras

    from zoo_transfer import get_card

    keras.utils.set_random_seed(args.seed)
    card = get_card("digitnet")
    x, y, x_test, y_test, _ = demo.digits_task(
        demo.PRETRAIN_CLASSES, train_per_class=0.8, seed=args.seed
    )
    x = card.preprocessing.normalize(x)  # the network takes normalised input
    x_test = card.preprocessing.normalize(x_test)

    # Pretext: 40 classes, digit x the 8 symmetries of the square (4 quarter turns, each
    # also transposed). Telling 0-4 apart alone is solved with a handful of features;
    # also telling how a digit is turned or mirrored (a rotation-prediction pretext,
    # Gidaris et al. 2018, on top of the labels) keeps far more shape information, which
    # is what the unseen digits 5-9 need.
    views, y_pretext = [], []
    for t, (turn, transpose) in enumerate(SYMMETRIES):
        view = np.rot90(x, turn, axes=(1, 2))
        views.append(np.swapaxes(view, 1, 2) if transpose else view)
        y_pretext.append(y * len(SYMMETRIES) + t)
    x_pretext, y_pretext = np.concatenate(views), np.concatenate(y_pretext)
    n_sym = len(SYMMETRIES)
    pretext_net = demo.DigitNet(include_top=True, weights=None, classes=5 * n_sym)
    augment = keras.Sequential(
        [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", fill_value=-1.0),
            keras.layers.RandomZoom(0.1, fill_mode="constant", fill_value=-1.0),
        ],
        name="augment",
    )
    trainer = keras.Sequential([keras.Input(x.shape[1:]), augment, pretext_net])
    steps = args.epochs * int(np.ceil(len(x_pretext) / 32))
    trainer.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, steps)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    trainer.fit(x_pretext, y_pretext, batch_size=32, epochs=args.epochs, verbose=2)

    # The shipped 5-class top: the logits of the upright classes (digit d, symmetry 0).
    model = demo.DigitNet(include_top=True, weights=None)
    for layer in model.layers:
        if layer.weights and layer.name != "predictions":
            layer.set_weights(pretext_net.get_layer(layer.name).get_weights())
    kernel, bias = pretext_net.get_layer("predictions").get_weights()
    model.get_layer("predictions").set_weights([kernel[:, ::n_sym], bias[::n_sym]])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)

    path = ASSETS / demo.WEIGHTS_FILE
    model.save_weights(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    no_top = demo.DigitNet(include_top=False, weights=None)
    print(f"held-out accuracy on digits 0-4 ({len(x_test)} images): {accuracy:.4f}")
    print(f"params: {model.count_params()}  params_no_top: {no_top.count_params()}")
    print(f"{path.name}: {path.stat().st_size} bytes, sha256 {digest}")
    print(f"wall time: {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
