"""Image folders made from the embedded digits, for tests that read folders like a user's."""

from __future__ import annotations

from pathlib import Path


def write_folder(root: Path, per_class: int, seed: int = 0, classes: int = 5) -> Path:
    """`root/<digit>/<i>.png`: 32 px RGB digits 5-9 (`classes` of them)."""
    import numpy as np
    from PIL import Image

    from zoo_transfer.recipes.digitnet import demo_digits

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
