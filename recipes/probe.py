"""Read facts off a live Keras build: what weights file it asks for, its input limits.

Used by the card generator (`scripts/generate_cards.py`) and by the registry verification tests.
`imagenet_build` runs a Keras constructor with `weights="imagenet"` exactly as a user
would, but intercepts the download and the weight loading, so it works offline and
fast while recording each `get_file` request (file name, URL, hash, cache folder).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BuildRecord:
    """What one stubbed constructor call asked of Keras."""

    downloads: list[dict[str, Any]] = field(default_factory=list)
    min_size: int | None = None
    default_size: int | None = None


@contextlib.contextmanager
def intercept_keras_weights(serve: str | None = None) -> Iterator[BuildRecord]:
    """Within the block, Keras applications never download.

    `keras.utils.get_file` records its arguments and returns `serve`; without `serve`
    it returns a placeholder and `Model.load_weights` does nothing (a dry build). With
    `serve` (a file zoo-transfer fetched and verified), a constructor called with
    `weights="imagenet"` builds exactly as Keras does for ImageNet and loads that file.
    `imagenet_utils.obtain_input_shape` is wrapped to record the `min_size` and
    `default_size` the constructor declares.
    """
    import keras
    from keras.src.applications import imagenet_utils
    from keras.src.utils import file_utils

    record = BuildRecord()
    real_get_file = file_utils.get_file
    real_load = keras.Model.load_weights
    real_shape = imagenet_utils.obtain_input_shape

    def fake_get_file(fname=None, origin=None, file_hash=None, cache_subdir="datasets", **kwargs):
        record.downloads.append(
            {"file": fname, "url": origin, "hash": file_hash, "cache_subdir": cache_subdir}
        )
        return serve or f"/nonexistent/zoo-transfer-probe/{fname}"

    def fake_load(self, *args, **kwargs):
        return None

    def spy_shape(*args, **kwargs):
        names = ("input_shape", "default_size", "min_size")
        bound = dict(zip(names, args, strict=False)) | kwargs
        record.min_size = bound.get("min_size")
        record.default_size = bound.get("default_size")
        return real_shape(*args, **kwargs)

    file_utils.get_file = fake_get_file
    if serve is None:
        keras.Model.load_weights = fake_load
    imagenet_utils.obtain_input_shape = spy_shape
    try:
        yield record
    finally:
        file_utils.get_file = real_get_file
        keras.Model.load_weights = real_load
        imagenet_utils.obtain_input_shape = real_shape


def imagenet_build(
    card: Any, *, include_top: bool, input_shape: Any = None
) -> tuple[Any, BuildRecord]:
    """Build `card` with `weights="imagenet"`, offline; return the model and record."""
    from ._keras_apps import instantiate

    with intercept_keras_weights() as record:
        model = instantiate(
            card, include_top=include_top, weights="imagenet", input_shape=input_shape
        )
    return model, record
