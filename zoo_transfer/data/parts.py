"""A source once read (`_Part`), and what every source then goes through alike.

Every reader (`zoo_transfer.data.sources` for folders and numpy arrays,
`zoo_transfer.data.tfds` for TensorFlow Datasets names and `tf.data` datasets) returns
a `_Part`: keys, labels, class names, and what the keys index (rows of a uint8 store,
file paths, or positions in a streamed dataset). What follows is the same for all of
them and lives here: the memory check that chooses between caching and streaming
(`_fits_in_memory`), the stratified split (`_split`), and `_Part.pipeline`, which makes
the `ResizableImages` that `load` returns.

A module of its own because both reader modules make parts, and `sources` calls the
`tfds` readers: with `_Part` in `sources`, the two would import each other.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo_transfer.data.arrays import ResizableArrays
from zoo_transfer.data.containers import _STREAM_SHUFFLE_BUFFER, ResizableImages
from zoo_transfer.data.image_ops import _decode_file, _plain, _to_rgb
from zoo_transfer.errors import DataError, DataWarning
from zoo_transfer.input_spec import InputSpec
from zoo_transfer.memory import available_memory as _available_memory

_CACHE_MEMORY_FRACTION = 0.5  # stream instead of caching above this share of free memory


@dataclass(frozen=True)
class FileList:
    """The image files of one split of a folder, in the order its batches read them
    in order, and their class indices (`Splits.train_files`)."""

    paths: list[str]
    labels: np.ndarray


@dataclass
class _Part:
    """One source (or one side of a split), before it becomes a `ResizableImages`.

    `keys` index `store` (in-memory images), or are file paths (`store` None, decoded per
    epoch), or are positions in `dataset` (a streamed tf.data source).
    """

    keys: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    description: str
    store: Any = None
    dataset: Any = None
    skipped: list[str] = field(default_factory=list)
    files: Any = None  # the image file of each key, where the source is a folder

    @property
    def count(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> _Part:
        return _Part(
            self.keys[rows],
            self.labels[rows],
            self.class_names,
            self.description,
            self.store,
            self.dataset,
            files=None if self.files is None else self.files[rows],
        )

    def file_list(self) -> FileList | None:
        """The image files of this part and their labels, in order (folders only)."""
        if self.files is None:
            return None
        return FileList([str(f) for f in self.files], self.labels.astype("int64"))

    def pipeline(
        self,
        size: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        drop_remainder: bool,
        batch_map: Callable | None,
        augmentation: Sequence[Any] = (),
        plain_map: Callable | None = None,
        spec: InputSpec | None = None,
    ) -> ResizableImages:
        import tensorflow as tf

        labels = self.labels.astype("int64")
        decode = None
        buffer = None
        rows = None
        if self.store is not None:
            rows = (tf.constant(self.keys.astype("int64")), tf.constant(labels))
        elif self.dataset is None:
            rows = (tf.constant(self.keys.astype(str)), tf.constant(labels))
            decode = _decode_file
        if rows is not None:
            source = tf.data.Dataset.from_tensor_slices(rows)
        else:
            source = _positions(self.dataset, self.keys, len(labels))
            decode = _to_rgb
            buffer = min(len(labels), _STREAM_SHUFFLE_BUFFER)
        return ResizableImages.from_keys(
            source,
            size=size,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_remainder=drop_remainder,
            rows=rows,
            store=self.store,
            decode=decode,
            batch_map=batch_map,
            plain_map=plain_map if augmentation else batch_map,
            augmentation=augmentation,
            shuffle_buffer=buffer,
            interpolation=spec.interpolation if spec else "bilinear",
            antialias=spec.antialias if spec else False,
        )

    def arrays(
        self,
        size: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        drop_remainder: bool,
        augmentation: list[Any] | None = None,
        num_classes: int | None,
        spec: InputSpec,
    ) -> ResizableArrays:
        """`pipeline` of the backends without TensorFlow: a `ResizableArrays` of this
        part's rows of the numpy store, or of its files (streamed) when there is no store."""
        options = {
            "size": size,
            "batch_size": batch_size,
            "shuffle": shuffle,
            "seed": seed,
            "drop_remainder": drop_remainder,
            "interpolation": spec.interpolation,
            "antialias": spec.antialias,
            "augmentation": augmentation or (),
            "num_classes": num_classes,
        }
        if self.store is None:
            return ResizableArrays.from_files(list(self.keys), self.labels, **options)
        whole = len(self.keys) == len(self.store) and np.array_equal(
            self.keys, np.arange(len(self.store))
        )
        images = self.store if whole else self.store[self.keys]
        return ResizableArrays(images, self.labels, **options)


def _positions(ds: Any, positions: np.ndarray, count: int) -> Any:
    """The elements of `ds` at `positions` (sorted), with a known cardinality."""
    import tensorflow as tf

    total = int(positions.max()) + 1 if len(positions) else 0
    mask = np.zeros(total, dtype=bool)
    mask[positions] = True
    picked = ds.take(total)
    if not mask.all():
        keep = tf.constant(mask)

        @_plain
        def kept(position, element):
            return keep[position]

        @_plain
        def drop_position(position, element):
            return element

        picked = picked.enumerate().filter(kept).map(drop_position)
    return picked.apply(tf.data.experimental.assert_cardinality(count))


def _split(part: _Part, fraction: float, seed: int) -> tuple[_Part, _Part]:
    """Stratified split: each class gives `fraction` of its images (largest remainders
    round to the overall total), chosen by a generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(part.labels == c) for c in range(len(part.class_names))]
    exact = np.array([len(rows) * fraction for rows in classes])
    take = np.floor(exact).astype(int)
    extra = int(round(part.count * fraction)) - int(take.sum())
    for c in np.argsort(-(exact - take), kind="stable")[: max(extra, 0)]:
        take[c] += 1
    val_rows = [rng.permutation(rows)[:n] for rows, n in zip(classes, take, strict=True)]
    val_rows = np.sort(np.concatenate(val_rows)) if val_rows else np.zeros(0, int)
    train_rows = np.setdiff1d(np.arange(part.count), val_rows)
    if len(val_rows) == 0 or len(train_rows) == 0:
        raise DataError(
            f"validation_split={fraction} of {part.count} images leaves "
            f"{len(train_rows)} for training and {len(val_rows)} for validation. Choose "
            "a fraction that leaves images on both sides, or pass `validation=`."
        )
    return part.subset(train_rows), part.subset(val_rows)


def _fits_in_memory(count: int, side: int, description: str) -> bool:
    need = count * side * side * 3
    free = _available_memory()
    if free is None or need <= _CACHE_MEMORY_FRACTION * free:
        return True
    warnings.warn(
        f"Caching {count} images of {side}x{side} from {description} would take "
        f"{need / 2**30:.1f} GiB, more than half of the {free / 2**30:.1f} GiB available; "
        "streaming from disk instead (decoding every epoch). Lower `storage_size` or pass "
        "cache=False to silence this warning.",
        DataWarning,
        stacklevel=5,
    )
    return False
