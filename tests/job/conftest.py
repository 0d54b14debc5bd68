"""Image folders for the training-job tests, made from the embedded digits (`write_folder`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from digit_folders import write_folder


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
