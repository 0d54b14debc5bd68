"""Fixtures for the inference tests: a colour classifier with known answers, PNG writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SIZE = 32


def color_model(class_names=("red", "blue"), activation: str | None = "softmax"):
    """A 2-class model that says "red" when mean red > mean blue, with known weights.

    Raw 0-255 input at 32x32; logits are 0.05 * (mean red - mean blue) and its negative.
    `class_names` only fixes which output is red: the first name is output 0.
    """
    import keras

    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(2, name="logits")
    x = dense(x)
    if activation:
        x = keras.layers.Activation(activation)(x)
    kernel = np.array([[1.0, -1.0], [0.0, 0.0], [-1.0, 1.0]], "float32") * 0.05
    if class_names[0] != "red":
        kernel = kernel[:, ::-1]
    dense.set_weights([kernel, np.zeros(2, "float32")])
    return keras.Model(inputs, x)


def write_png(path: Path, rgb, size=(40, 48), mode: str = "RGB") -> Path:
    """A solid-colour PNG (`mode` RGB, L or RGBA) of `size` (width, height)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, rgb).save(path)
    return path


@pytest.fixture(name="color_model")
def color_model_fixture():
    return color_model


@pytest.fixture(name="write_png")
def write_png_fixture():
    return write_png


@pytest.fixture
def color_folder(tmp_path):
    """red/ holds 3 red images and 1 blue one (mislabelled); blue/ holds 2 blue images."""
    root = tmp_path / "val"
    for i in range(3):
        write_png(root / "red" / f"r{i}.png", (200 + 10 * i, 20, 30))
    write_png(root / "red" / "r9_blue.png", (10, 20, 220))
    write_png(root / "blue" / "b0.png", (0, 0, 255))
    write_png(root / "blue" / "b1.jpg", (40, 60, 180))
    (root / "blue" / "notes.txt").write_text("not an image")
    return root
