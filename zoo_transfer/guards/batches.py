"""The images a guard reads: in a fixed order, without augmentation, from any source."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from zoo_transfer.errors import DataError

BATCH_SIZE = 32


def read_batches(
    data: Any, batch_size: int, *, labelled: bool, rank: int | None = None
) -> Iterator[tuple[Any, Any]]:
    """`(images, labels)` batches of `data` in a fixed order, without augmentation;
    `rank`: the model input's (batch axis included), to catch an unbatched dataset."""
    if hasattr(data, "train_images") and hasattr(data, "val_images"):  # Splits
        data = data.train_images
    if hasattr(data, "in_order") and hasattr(data, "dataset"):  # ResizableImages/Arrays
        data = data.in_order().dataset()
    if hasattr(data, "on_epoch_end") and hasattr(data, "__getitem__"):  # a PyDataset
        for index in range(len(data)):
            images, labels = data[index][:2]
            yield images, labels if labelled else None
        return
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if len(x) != len(y):
            raise DataError(
                f"Expected as many labels as images. Received: {len(x)} images and {len(y)} labels."
            )
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
        return
    if isinstance(data, np.ndarray) and not labelled:
        if data.ndim != 4:
            raise DataError(f"Expected images of shape (N, H, W, C). Received: {data.shape}")
        for i in range(0, len(data), batch_size):
            yield data[i : i + batch_size], None
        return
    if hasattr(data, "element_spec") and hasattr(data, "cardinality"):  # tf.data.Dataset
        import tensorflow as tf

        if int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise DataError(
                "Expected a finite dataset. Received: a tf.data.Dataset that repeats forever; "
                "drop `.repeat()` (one pass is read)."
            )
        for element in data:
            if isinstance(element, (tuple, list)):
                images, labels = element[0], element[1] if len(element) > 1 else None
            else:
                images, labels = element, None
            if rank is not None and len(images.shape) == rank - 1:
                raise DataError(
                    "Expected a batched dataset of (images, labels). Received: elements of "
                    f"shape {tuple(images.shape)}, one image each; call .batch(32) on it."
                )
            if labelled and labels is None:
                raise DataError("Expected a dataset of (images, labels). Received: images only.")
            yield images, labels
        return
    kinds = "(images, labels) arrays, a batched tf.data.Dataset, a Splits or a ResizableImages"
    if not labelled:
        kinds = "an array of images, " + kinds
    raise DataError(f"Expected {kinds}. Received: {type(data).__name__}")
