"""Image folders: which subfolders are classes and which files are images, one rule everywhere.

Training (`zoo_transfer.data.load`), validation, `evaluate` and `predict` all list a
folder of `<class>/<image>` files (Keras' `image_dataset_from_directory` layout) with
this module, so a class index means the same thing in all of them:

- a subfolder is a class unless its name starts with `.` or `__` (`.ipynb_checkpoints`,
  `.git`, `__MACOSX`, `__pycache__`): such folders are never classes, and nothing inside
  them, at any depth, is a sample; files whose names start with `.` (macOS' `._x.jpg`
  resource forks) are skipped too;
- classes are the sorted subfolder names;
- an image is a file ending in one of `IMAGE_EXTENSIONS` (any case), at any depth
  below its class folder; files that end so but do not decode are skipped and counted
  by the readers. Images in a format TensorFlow cannot decode
  (`UNSUPPORTED_IMAGE_EXTENSIONS`: TIFF, HEIC, AVIF, JPEG 2000) are never samples
  either, but they are listed (`FolderListing.unsupported`), so the readers count
  them as skipped instead of ignoring them in silence. Other files are ignored.

```python
from zoo_transfer.folders import list_image_folder
listing = list_image_folder("flowers/train")
listing.class_names, listing.paths[0], listing.labels[0]
```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The extensions TensorFlow's and Pillow's decoders both read.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")
#: Image formats TensorFlow does not decode: skipped and counted, never samples.
UNSUPPORTED_IMAGE_EXTENSIONS = (".tif", ".tiff", ".heic", ".heif", ".avif", ".jp2")


def is_hidden(name: str) -> bool:
    """True for names that are never classes or samples (`.x`, `__MACOSX`, `__pycache__`)."""
    return name.startswith((".", "__"))


def is_image_name(name: str) -> bool:
    """True for a visible file name ending in one of `IMAGE_EXTENSIONS`."""
    return not is_hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS)


def class_folders(root: str | os.PathLike) -> list[str]:
    """The sorted names of `root`'s class subfolders (hidden ones left out)."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not is_hidden(p.name))


def images_under(folder: str | os.PathLike) -> list[str]:
    """Every image file below `folder`, at any depth, sorted; hidden folders are not entered."""
    return _walk(folder)[0]


def _walk(folder: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(images, images in an unsupported format) below `folder`, sorted."""
    found, unsupported = [], []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not is_hidden(d))
        for f in sorted(files):
            if is_image_name(f):
                found.append(os.path.join(directory, f))
            elif not is_hidden(f) and f.lower().endswith(UNSUPPORTED_IMAGE_EXTENSIONS):
                unsupported.append(os.path.join(directory, f))
    return found, unsupported


@dataclass
class FolderListing:
    """What a class folder holds: image paths, their class indices, the class names."""

    paths: list[str]
    labels: list[int]  # indices into class_names; -1 for a folder not among them
    class_names: list[str]
    folders: list[str]  # the class folders found (== class_names unless these were given)
    unsupported: list[str] = field(default_factory=list)  # TIFF etc.: never samples


def list_image_folder(
    root: str | os.PathLike, class_names: Sequence[str] | None = None
) -> FolderListing:
    """List `root`'s images by class.

    Args:
        root: a folder with one subfolder per class.
        class_names: the model's classes, whose order gives the labels; a folder not
            among them gets label -1 (callers refuse it). Default: the sorted class
            folder names.
    """
    folders = class_folders(root)
    names = list(folders) if class_names is None else list(class_names)
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)
    paths: list[str] = []
    labels: list[int] = []
    unsupported: list[str] = []
    for name in folders:
        files, other = _walk(Path(root) / name)
        paths += files
        labels += [index.get(name, -1)] * len(files)
        unsupported += other
    return FolderListing(paths, labels, names, folders, unsupported)


def typical_side(root: str | os.PathLike, sample: int = 64) -> int | None:
    """The median shorter side, in pixels, of up to `sample` images of the class folder
    `root` (spread evenly over its sorted listing), read from the file headers only.

    None when no image header could be read. The training defaults use it: images of a
    few dozen pixels need no 224 px input (`zoo_transfer.recipes.data_defaults`).
    """
    from PIL import Image  # Pillow comes with matplotlib, a dependency

    paths = list_image_folder(root).paths
    if not paths:
        return None
    step = max(1, len(paths) // sample)
    sides = []
    for path in paths[::step][:sample]:
        try:
            with Image.open(path) as image:  # lazy: the header, not the pixels
                sides.append(min(image.size))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    if not sides:
        return None
    sides.sort()
    return int(sides[len(sides) // 2])
