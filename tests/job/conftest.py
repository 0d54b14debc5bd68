"""Image folders for the training-job tests, made from the embedded digits."""

from __future__ import annotations

from pathlib import Path

import pytest


def write_folder(root: Path, per_class: int, seed: int = 0, classes: int = 5) -> Path:
    """`root/<digit>/<i>.png`: 32 px RGB digits 5-9 (`classes` of them)."""
    import numpy as np
    from PIL import Image

    from zoo_transfer.recipes._demo_net import demo_digits

    x, y, _, _, names = demo_digits(seed=seed, train_per_class=per_class)
    for c in range(classes):
        (root / names[c]).mkdir(parents=True, exist_ok=True)
    count = {c: 0 for c in range(classes)}
    for image, label in zip(x, y, strict=True):
        if label < classes:
            Image.fromarray(np.asarray(image, np.uint8)).save(
                root / names[label] / f"{count[label]:03d}.png"
            )
            count[label] += 1
    return root


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory) -> Path:
    """60 PNGs per class, plus a truncated JPEG and a text file named .jpg."""
    root = write_folder(tmp_path_factory.mktemp("digits") / "train", per_class=60)
    jpeg = root / "5" / "000.png"
    from PIL import Image

    Image.open(jpeg).save(root / "6" / "broken.jpg", quality=90)
    data = (root / "6" / "broken.jpg").read_bytes()
    (root / "6" / "broken.jpg").write_bytes(data[: len(data) // 2])  # truncated JPEG
    (root / "7" / "notes.jpg").write_text("this is not an image")
    return root


@pytest.fixture(scope="session")
def make_folder():
    """`make_folder(root, per_class, seed=0, classes=5)` writes a digits folder."""
    return write_folder
