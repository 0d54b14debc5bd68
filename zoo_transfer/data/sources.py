"""Input pipelines: `load` a data source, and images whose size can change between epochs.

`load(source, image_size=...)` reads a folder with one subfolder per class, a
`tfds:NAME[:SPLIT]` TensorFlow Datasets name, a numpy `(x, y)` pair or an unbatched
`tf.data.Dataset` of `(image, label)`, and returns `Splits`: batched training and
validation datasets of raw RGB 0-255 float32 images, the class names, and the files it
skipped.

Storage strategy. Images in a folder come in many sizes, while the training size may grow
between epochs (`ProgressiveResizing`). With `cache=True` (the default) every file is
decoded exactly once, in a parallel `tf.data` pass, resized to a square *storage size*
(`storage_size`, default `image_size`; pass the largest size of a progressive schedule)
and kept in memory as one uint8 tensor. Each epoch then only gathers a batch from memory
and resizes it to the current size (nothing at all when the size equals the storage
size). A uint8 store is 4x smaller than float32 and loses at most 0.5 of a grey level
to rounding. When the store would take more than half of the available memory, or with
`cache=False`, images are streamed instead: the file list is shuffled, then each file
is decoded in parallel every epoch and resized once, straight to the current size.
Numpy sources are kept as they are (they already fit in memory and have one size).

With the cache, JPEG photos much larger than the storage size are decoded at 1/2, 1/4
or 1/8 scale by libjpeg itself (`decode_jpeg(ratio=...)`) when their shorter side is at
least that multiple of the storage size: several times faster, and the DCT scaling
averages pixels instead of skipping them.

Corrupt files. The first pass decodes every file with `ignore_errors` and carries each
file's index, so the files that did not survive are known before training starts: they
are left out of both splits, listed in `Splits.skipped`, and reported in one
`DataWarning`. No epoch can fail half-way on a bad file.

`ResizableImages` wraps images and labels in a `tf.data` pipeline that resizes every
image to `images.size`, a TensorFlow variable the pipeline reads as each batch is made.
`ProgressiveResizing` is bound to it explicitly and changes the size at the start of an
epoch, before Keras creates that epoch's iterator, so no batch of the old size can come
out of the prefetch buffer afterwards.

Augmentation runs in the pipeline on the training split only, after the resize, with
Keras core layers (`augmentation_layers`). It is applied one batch at a time in order, so
the seeded layers draw the same random numbers for the same seed: the same `seed` gives
the same batches.
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer._memory import available_memory as _available_memory
from zoo_transfer.errors import BuildArgumentError, DataError, DataWarning
from zoo_transfer.folders import IMAGE_EXTENSIONS, list_image_folder

AUGMENT_PRESETS = ("none", "light", "medium", "heavy")
_MIXING_PRESETS = ("heavy",)  # presets whose layers mix labels: one-hot labels
_CACHE_MEMORY_FRACTION = 0.5  # stream instead of caching above this share of free memory
_STREAM_SHUFFLE_BUFFER = 1024  # decoded images a streamed tf.data source may hold


class ResizableImages:
    """Raw images and labels, batched at a size that can change between epochs.

    Args:
        images: `(N, H, W, 3)` array of raw RGB 0-255 (any H, W), or a `tf.data.Dataset`
            of unbatched `(image, label)` pairs.
        labels: `(N,)` array when `images` is an array.
        size: the initial square side in pixels.
        batch_size: batch size.
        shuffle: reshuffle every epoch, deterministically from `seed`.
        drop_remainder: drop the last partial batch (the default), so every batch has a
            static shape (XLA and TPUs compile once per size, not per batch).

    ```python
    train = ResizableImages(x, y, size=96, batch_size=32)
    model.fit(train.dataset(), epochs=6,
              callbacks=[ProgressiveResizing({0: 96, 2: 128, 4: 160}, train)])
    ```
    """

    def __init__(
        self,
        images: Any,
        labels: Any = None,
        *,
        size: int,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int = 0,
        interpolation: str = "bilinear",
        drop_remainder: bool = True,
    ):
        import tensorflow as tf

        self._rows: Any = None  # (keys, labels) tensors, when the source allows random access
        if isinstance(images, tf.data.Dataset):
            self._source = images
        else:
            images = np.asarray(images)
            if images.ndim != 4 or images.shape[-1] != 3:
                raise BuildArgumentError(
                    f"Expected images of shape (N, H, W, 3). Received: {images.shape}. "
                    "Convert grayscale with np.repeat(x, 3, axis=-1)."
                )
            labels = np.asarray(labels)
            if len(labels) != len(images):
                raise BuildArgumentError(f"{len(images)} images but {len(labels)} labels.")
            self._rows = (tf.constant(images), tf.constant(labels))
            self._source = tf.data.Dataset.from_tensor_slices(self._rows)
        if int(size) < 1 or int(batch_size) < 1:
            raise BuildArgumentError(
                f"Expected positive size and batch_size. Received: {size}, {batch_size}"
            )
        self.size = tf.Variable(int(size), dtype=tf.int32, trainable=False, name="image_size")
        self.batch_size = int(batch_size)
        self.shuffle, self.seed, self.interpolation = shuffle, seed, interpolation
        self.drop_remainder = bool(drop_remainder)
        # Set by `load`: the source then yields (key, label); see `dataset()`.
        self._store: Any = None  # (N, S, S, 3) uint8 tensor that integer keys index
        self._decode: Callable | None = None  # key -> image, per element after the shuffle
        self._batch_map: Callable | None = None  # (images, labels) -> same, per batch
        self._shuffle_buffer: int | None = None
        self._augmentation: list[Any] = []  # the seeded layers `_batch_map` calls
        self._plain_map: Callable | None = None  # `_batch_map` without the augmentation
        # The epoch the next pass draws its order and augmentation for; each pass
        # advances it, `set_epoch` pins it (`EpochSeeding` does, at every epoch begin).
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self._rows: Any = None  # (keys, labels) tensors, when the source allows random access

    def in_order(self) -> ResizableImages:
        """These images once each, in their stored order, without augmentation.

        For reading every image as it is (backbone features, a linear probe, scoring):
        no shuffle, no dropped last batch, labels as training gets them. It shares the
        current size; the copy never advances the epoch.
        """
        import copy

        once = copy.copy(self)
        once.shuffle, once.drop_remainder = False, False
        once._batch_map, once._augmentation = self._plain_map, []
        return once

    @property
    def num_images(self) -> int | None:
        """How many images one pass yields before batching (None when unknown)."""
        n = int(self._source.cardinality())
        return n if n >= 0 else None

    def set_size(self, size: int) -> None:
        """Set the square side of the batches made from now on."""
        self.size.assign(int(size))

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass draw epoch `epoch`'s order and augmentation.

        Both are functions of `(seed, epoch)` alone, so a `fit` resumed at epoch `e`
        sees the batches an uninterrupted one saw there.
        """
        self.epoch.assign(int(epoch))

    def dataset(self) -> Any:
        """A finite `tf.data.Dataset` of `(images, labels)` batches at the current size.

        Do not `.repeat()` it: Keras would then keep one iterator (and its prefetched,
        old-size batches) across epochs; `ProgressiveResizing` refuses that setup.
        """
        import tensorflow as tf

        size, method = self.size, self.interpolation
        parallel = {"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True}

        def resize(image):
            side = size.read_value()
            return _resize(tf.cast(image, tf.float32), side, method)

        ds = self._source
        if self.shuffle or self._augmentation:
            ds = self._epoch_start(ds)
        if self._store is not None:
            store = self._store
            ds = ds.batch(self.batch_size, drop_remainder=self.drop_remainder)

            @_plain
            def gather(keys, labels):
                return resize(tf.gather(store, keys)), labels

            ds = ds.map(gather, **parallel)
        else:
            decode = self._decode

            @_plain
            def element(image, label):
                return resize(decode(image) if decode is not None else image), label

            ds = ds.map(element, **parallel)
            ds = ds.batch(self.batch_size, drop_remainder=self.drop_remainder)
        if self._batch_map is not None:
            # Sequential on purpose: seeded random layers then draw in batch order.
            ds = ds.map(self._batch_map)
        return ds.prefetch(tf.data.AUTOTUNE)

    def _epoch_start(self, ds: Any) -> Any:
        """`ds` behind a step that runs as each pass begins: it reads the epoch `e` (and
        advances it), reseeds the augmentation layers from `(seed, layer, e)`, and, with
        `shuffle`, orders the elements by a permutation drawn from `(seed, e)`.

        Sources held as tensors (in-memory images, file lists) get a full permutation; a
        streamed `tf.data` source, which has no random access, gets a shuffle buffer
        whose order depends on the seed and on how many passes this process made.
        """
        import tensorflow as tf

        epoch, seed, rows = self.epoch, int(self.seed), self._rows
        # The generator each seeded layer draws from inside tf.data (Keras makes one
        # for TensorFlow when the Keras backend is another): made here, eagerly.
        generators = [
            (i, layer._get_seed_generator("tensorflow"))
            for i, layer in enumerate(self._augmentation)
            if getattr(layer, "generator", None) is not None
        ]

        def start(_):
            e = epoch.read_value()
            first = [(seed * 1_000_003 + e * 1_009 + i) % 2**31 for i, _ in generators]
            updates = [
                g.state.assign(tf.cast(tf.stack([f, 0]), g.state.dtype))
                for f, (_, g) in zip(first, generators, strict=True)
            ]
            with tf.control_dependencies([*updates, epoch.assign_add(1)]):
                if rows is None or not self.shuffle:
                    return tf.data.Dataset.from_tensors(tf.constant(0, tf.int64))
                n = tf.shape(rows[1], out_type=tf.int64)[0]
                order = tf.random.experimental.stateless_shuffle(
                    tf.range(n), seed=tf.stack([tf.constant(seed, tf.int64), e])
                )
                return tf.data.Dataset.from_tensor_slices(order)

        head = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).flat_map(_plain(start))
        count = int(ds.cardinality())
        if rows is not None and self.shuffle:
            keys, labels = rows
            ds = head.map(lambda i: (tf.gather(keys, i), tf.gather(labels, i)))
        else:
            if self.shuffle:
                buffer = self._shuffle_buffer or (count if count > 0 else _STREAM_SHUFFLE_BUFFER)
                ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
            ds = head.flat_map(lambda _, ds=ds: ds)
        # flat_map hides the length; Keras needs it for its progress bar and steps
        return ds.apply(tf.data.experimental.assert_cardinality(count)) if count >= 0 else ds


class ResizableArrays:
    """In-memory images and labels, batched at a size that can change between epochs,
    without TensorFlow: the `ResizableImages` of the JAX, PyTorch and numpy backends.

    The images are resized once per size, with `keras.ops.image.resize` (in chunks),
    and kept as one float32 array at the current size, so an epoch only slices
    batches out of memory. `dataset()` gives the `keras.utils.PyDataset` to pass to
    `fit`; `ProgressiveResizing` accepts this class as it accepts `ResizableImages`.

    Args:
        images: `(N, H, W, 3)` array of raw RGB 0-255 (any H, W).
        labels: `(N,)` array (or `(N, C)` one-hot).
        size: the initial square side in pixels.
        batch_size: batch size.
        shuffle: reshuffle every epoch, deterministically from `seed`.
        seed: seed of the shuffle.
        interpolation: `keras.ops.image.resize` interpolation.
        drop_remainder: drop the last partial batch (the default), so every batch has
            one static shape and a jitted train step compiles once per size.

    ```python
    train = ResizableArrays(x, y, size=96, batch_size=32)
    model.fit(train.dataset(), epochs=6,
              callbacks=[ProgressiveResizing({0: 96, 2: 128, 4: 160}, train)])
    ```
    """

    _CHUNK = 256  # images resized per keras.ops call

    def __init__(
        self,
        images: Any,
        labels: Any,
        *,
        size: int,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int = 0,
        interpolation: str = "bilinear",
        drop_remainder: bool = True,
    ):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise BuildArgumentError(
                f"Expected images of shape (N, H, W, 3). Received: {images.shape}. "
                "Convert grayscale with np.repeat(x, 3, axis=-1)."
            )
        if len(labels) != len(images):
            raise BuildArgumentError(
                f"Expected one label per image. Received: {len(images)} images and "
                f"{len(labels)} labels."
            )
        if isinstance(size, bool) or int(size) < 1 or int(batch_size) < 1:
            raise BuildArgumentError(
                f"Expected positive size and batch_size. Received: size={size}, "
                f"batch_size={batch_size}"
            )
        self.batch_size = int(batch_size)
        if drop_remainder and len(images) < self.batch_size:
            raise BuildArgumentError(
                f"Expected at least batch_size={self.batch_size} images with "
                f"drop_remainder=True. Received: {len(images)} images. Lower batch_size "
                "or pass drop_remainder=False."
            )
        self._images, self.labels = images, labels
        self.shuffle, self.seed, self.interpolation = shuffle, seed, interpolation
        self.drop_remainder = bool(drop_remainder)
        self.epoch = 0  # reshuffles advance it
        self._order = self._permutation()
        self.size = 0
        self._store: np.ndarray | None = None
        self.set_size(size)

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.labels)
        return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

    def set_size(self, size: int) -> None:
        """Resize the stored images to `size` x `size` for the batches made from now on."""
        size = int(size)
        if size < 1:
            raise BuildArgumentError(f"Expected a positive size. Received: size={size}")
        if size == self.size:
            return
        if self._images.shape[1:3] == (size, size):
            store = self._images.astype("float32", copy=False)
        else:
            import keras

            chunks = [
                keras.ops.convert_to_numpy(
                    keras.ops.image.resize(
                        self._images[i : i + self._CHUNK].astype("float32"),
                        (size, size),
                        interpolation=self.interpolation,
                    )
                )
                for i in range(0, len(self._images), self._CHUNK)
            ]
            store = np.concatenate(chunks).astype("float32", copy=False)
        self._store, self.size = store, size  # swapped in whole: readers see one size

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch `index` of the current epoch, at the current size."""
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} is out of range: this epoch has {len(self)}.")
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        return self._store[rows], self.labels[rows]

    def next_epoch(self) -> None:
        """Draw the next epoch's order (Keras calls it at the end of every epoch)."""
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Use epoch `epoch`'s order, a function of `(seed, epoch)` alone (a resumed `fit`)."""
        self.epoch = int(epoch)
        self._order = self._permutation()

    def dataset(self, **kwargs: Any) -> Any:
        """The batches of one epoch, for `fit`, `evaluate` and `predict`.

        A `keras.utils.PyDataset`; on the TensorFlow backend a `tf.data.Dataset` made
        from a generator instead, since Keras would fix a PyDataset's batch shape from
        its first batches there (its image sides are left open here, for resizing).

        Args:
            **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of `PyDataset`
                (ignored on the TensorFlow backend).
        """
        import keras

        if keras.backend.backend() != "tensorflow":
            return _array_batches_class()(self, **kwargs)
        import tensorflow as tf  # TF-only branch

        def epoch():  # a new generator for every epoch's iterator
            for index in range(len(self)):
                yield self.batch(index)
            self.next_epoch()

        labels = tf.TensorSpec((None, *self.labels.shape[1:]), tf.as_dtype(self.labels.dtype))
        images = tf.TensorSpec((None, None, None, 3), tf.float32)
        ds = tf.data.Dataset.from_generator(epoch, output_signature=(images, labels))
        return ds.apply(tf.data.experimental.assert_cardinality(len(self)))

    def _permutation(self) -> np.ndarray:
        n = len(self.labels)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)


_ARRAY_BATCHES: Any = None


def _array_batches_class() -> Any:
    """The `PyDataset` behind `ResizableArrays.dataset()`; made on first use, so that
    importing this module does not import Keras."""
    global _ARRAY_BATCHES
    if _ARRAY_BATCHES is None:
        import keras

        class ArrayBatches(keras.utils.PyDataset):
            def __init__(self, source: ResizableArrays, **kwargs: Any):
                super().__init__(**kwargs)
                self.source = source

            def __len__(self) -> int:
                return len(self.source)

            def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
                return self.source.batch(index)

            def on_epoch_end(self) -> None:
                self.source.next_epoch()

        _ARRAY_BATCHES = ArrayBatches
    return _ARRAY_BATCHES


@dataclass(repr=False)
class Splits:
    """What `load` returns; unpacks as `train, val, class_names = load(...)`.

    Args:
        train: batched `tf.data.Dataset` of `(images, labels)`, images raw RGB 0-255
            float32 of shape `(batch, size, size, 3)`.
        val: the same for validation (never augmented, never shuffled), or `None`.
        class_names: class `i` is `class_names[i]`.
        train_images: the `ResizableImages` behind `train`, for `ProgressiveResizing`.
        val_images: the `ResizableImages` behind `val`, or `None`.
        skipped: files left out because they could not be decoded.
        num_train: training images (the last partial batch is dropped each epoch).
        num_val: validation images (all of them are used).
        label_mode: `"int"` (class indices) or `"categorical"` (one-hot, when the
            augmentation mixes labels).
        source: what was read, in words.
        augment: the augmentation preset of the training split (`load(augment=)`).

    ```python
    splits = load("flowers/", image_size=160, validation_split=0.2)
    train, val, class_names = splits
    ```
    """

    train: Any
    val: Any
    class_names: list[str]
    train_images: ResizableImages
    val_images: ResizableImages | None
    skipped: list[str] = field(default_factory=list)
    num_train: int = 0
    num_val: int = 0
    label_mode: str = "int"
    source: str = ""
    augment: str = "none"

    def __iter__(self) -> Iterator[Any]:
        yield self.train
        yield self.val
        yield self.class_names

    def __repr__(self) -> str:
        return (
            f"Splits(source={self.source!r}, num_train={self.num_train}, "
            f"num_val={self.num_val}, classes={len(self.class_names)}, "
            f"label_mode={self.label_mode!r}, skipped={len(self.skipped)})"
        )


def augmentation_layers(preset: str, seed: int | None = None) -> list[Any]:
    """The Keras core augmentation layers of a preset, in the order they are applied.

    `none`: no layers. `light`: horizontal flip, translation and zoom of up to 10%.
    `medium`: light plus rotation of up to 18 degrees and contrast of up to 20%.
    `heavy`: medium plus `MixUp`, which mixes pairs of images and their labels, so `load`
    then makes one-hot labels. Every layer works on raw 0-255 images and keeps them in that range.

    Args:
        preset: `"none"`, `"light"`, `"medium"` or `"heavy"`.
        seed: base seed; layer `i` gets `seed + i` (`None`: unseeded).

    ```python
    layers = augmentation_layers("medium", seed=0)
    augmented = {"images": images, "labels": labels}
    for layer in layers:
        augmented = layer(augmented, training=True)
    ```
    """
    if preset not in AUGMENT_PRESETS:
        raise DataError(
            f"Expected `augment` to be one of {', '.join(AUGMENT_PRESETS)}. "
            f"Received: augment={preset!r}"
        )
    import keras

    layers: list[Any] = []

    def add(cls: Any, *args: Any, **kwargs: Any) -> None:
        s = None if seed is None else seed + len(layers)
        layers.append(cls(*args, seed=s, dtype="float32", **kwargs))

    if preset in ("light", "medium", "heavy"):
        add(keras.layers.RandomFlip, "horizontal")
        add(keras.layers.RandomTranslation, 0.1, 0.1)
        add(keras.layers.RandomZoom, 0.1)
    if preset in ("medium", "heavy"):
        add(keras.layers.RandomRotation, 0.05)
        add(keras.layers.RandomContrast, 0.2, value_range=(0, 255))
    if preset == "heavy":
        # Not CutMix: in Keras 3.15 it fails on batches whose height and width are only
        # known at run time (`float * int32` in its crop bounds), which resizable
        # pipelines are.
        add(keras.layers.MixUp, alpha=0.2)
    return layers


def load(
    source: Any,
    *,
    image_size: int,
    batch_size: int = 32,
    validation_split: float | None = None,
    validation: Any = None,
    augment: str = "light",
    seed: int = 0,
    cache: bool = True,
    storage_size: int | None = None,
    drop_empty_classes: bool = False,
) -> Splits:
    """Read images and labels into batched training (and validation) pipelines.

    Args:
        source: a folder with one subfolder per class (sorted names give the class
            indices, as in Keras); `"tfds:NAME[:SPLIT]"` (`SPLIT` defaults to `train`,
            slices such as `train[:80%]` work; read from `$TFDS_DATA_DIR` or the TFDS
            default folder, never downloaded); a numpy `(x, y)` pair with `x` of shape
            `(N, H, W[, C])` and integer `y`; or an unbatched `tf.data.Dataset` of
            `(image, integer label)`. Grayscale and RGBA images become RGB.
        image_size: the square side, in pixels, of the images in every batch.
        batch_size: images per batch.
        validation_split: fraction of `source` held out for validation, stratified by
            class and fixed by `seed`.
        validation: a separate validation source (same kinds as `source`), instead of
            `validation_split`.
        augment: `"none"`, `"light"` (default), `"medium"` or `"heavy"`; see
            `augmentation_layers`. Only the training split is augmented.
        seed: seeds the split, the shuffle and the augmentation: same seed, same batches.
        cache: keep the decoded images in memory (decode once). `False` decodes the
            files every epoch, for data sets larger than memory.
        storage_size: side at which decoded images are cached (default `image_size`);
            set it to the largest size of a `ProgressiveResizing` schedule.
        drop_empty_classes: a class folder with no readable image is an error (the
            model could never learn it); `True` leaves it out with a `DataWarning`.

    Returns:
        `Splits`, which unpacks as `train, val, class_names`.

    ```python
    train, val, class_names = load("flowers/", image_size=160, validation_split=0.2)
    model.fit(train, validation_data=val, epochs=5)
    ```
    """
    image_size = _positive_int(image_size, "image_size")
    batch_size = _positive_int(batch_size, "batch_size")
    storage = image_size if storage_size is None else _positive_int(storage_size, "storage_size")
    if storage < image_size:
        raise DataError(
            f"Expected `storage_size` >= `image_size` ({image_size}), since smaller stored "
            f"images would be blown up again. Received: storage_size={storage_size}"
        )
    if validation_split is not None:
        if validation is not None:
            raise DataError(
                "Pass either `validation_split` or `validation`, not both. Received: "
                f"validation_split={validation_split!r} and validation={_describe(validation)}"
            )
        if isinstance(validation_split, bool) or not (
            isinstance(validation_split, (int, float)) and 0 < validation_split < 1
        ):
            raise DataError(
                "Expected `validation_split` to be a fraction strictly between 0 and 1, "
                f"such as 0.2. Received: validation_split={validation_split!r}"
            )
    layers = augmentation_layers(augment, seed=seed)  # validates `augment` first
    label_mode = "categorical" if augment in _MIXING_PRESETS else "int"

    train = _read(source, storage, cache, drop_empty_classes)
    skipped = list(train.skipped)
    val = None
    if validation is not None:
        val = _read(validation, storage, cache, drop_empty_classes)
        skipped += val.skipped
        if val.class_names != train.class_names:
            raise DataError(
                f"The validation source {val.description} has classes {val.class_names}, "
                f"but the training source has {train.class_names}. Give both the same "
                "class folders (or labels)."
            )
    elif validation_split is not None:
        train, val = _split(train, float(validation_split), seed)
    if skipped:
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        warnings.warn(
            f"Skipped {len(skipped)} file(s) that could not be decoded as images "
            f"(corrupt, truncated, not an image, or a format TensorFlow does not read "
            f"such as TIFF: convert those to PNG or JPEG): {shown}. They are listed in "
            "`Splits.skipped`; delete or replace them to silence this warning.",
            DataWarning,
            stacklevel=2,
        )

    num_classes = len(train.class_names)
    train_images = train.pipeline(
        image_size,
        batch_size,
        shuffle=True,
        seed=seed,
        drop_remainder=train.count >= batch_size,
        batch_map=_batch_map(layers, label_mode, num_classes),
        augmentation=layers,
        plain_map=_batch_map([], label_mode, num_classes),
    )
    val_images = None
    if val is not None:
        val_images = val.pipeline(
            image_size,
            batch_size,
            shuffle=False,
            seed=seed,
            drop_remainder=False,
            batch_map=_batch_map([], label_mode, num_classes),
        )
    return Splits(
        train=train_images.dataset(),
        val=None if val_images is None else val_images.dataset(),
        class_names=list(train.class_names),
        train_images=train_images,
        val_images=val_images,
        skipped=skipped,
        num_train=train.count,
        num_val=0 if val is None else val.count,
        label_mode=label_mode,
        source=train.description,
        augment=augment,
    )


# ---------------------------------------------------------------------------------------
# Sources


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
        )

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
        images = ResizableImages(
            source,
            size=size,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_remainder=drop_remainder,
        )
        images._store, images._decode = self.store, decode
        images._batch_map, images._shuffle_buffer = batch_map, buffer
        images._rows, images._augmentation = rows, list(augmentation)
        images._plain_map = plain_map if augmentation else batch_map
        return images


def _read(source: Any, storage: int, cache: bool, drop_empty: bool = False) -> _Part:
    import tensorflow as tf

    if isinstance(source, str) and source.startswith("tfds:"):
        part = _read_dataset(*_tfds(source), storage, cache)
    elif isinstance(source, (str, os.PathLike)):
        part = _read_folder(Path(source), storage, cache, drop_empty)
    elif isinstance(source, tf.data.Dataset):
        part = _read_dataset(source, None, "tf.data.Dataset", storage, cache)
    elif isinstance(source, (tuple, list)) and len(source) == 2:
        part = _read_arrays(*source)
    else:
        raise DataError(
            "Expected a folder path, 'tfds:NAME[:SPLIT]', a numpy (x, y) pair or a "
            f"tf.data.Dataset of (image, label). Received: {_describe(source)}"
        )
    if len(part.class_names) < 2:
        raise DataError(
            f"{part.description} has {len(part.class_names)} class(es) "
            f"({part.class_names}); transfer learning needs at least 2. Add a subfolder "
            "(or label) for every class you want the model to tell apart."
        )
    if part.count == 0:
        raise DataError(
            f"{part.description} has no readable images ({len(part.skipped)} file(s) "
            "failed to decode). Put .jpg, .png, .bmp, .gif or .webp files in its class "
            "subfolders."
        )
    return part


def _read_folder(root: Path, storage: int, cache: bool, drop_empty: bool = False) -> _Part:
    if not root.exists():
        raise DataError(
            f"Image folder not found: {str(root)!r}. Expected a folder with one subfolder "
            "per class; check the path (relative paths start at "
            f"{os.getcwd()!r})."
        )
    if not root.is_dir():
        raise DataError(
            f"Expected a folder with one subfolder per class. Received a file: {str(root)!r}."
        )
    listing = list_image_folder(root)  # hidden folders (.ipynb_checkpoints, __MACOSX) left out
    class_names, paths, labels = listing.class_names, listing.paths, listing.labels
    description = f"folder {str(root)!r}"
    if not class_names:
        loose = [p.name for p in root.iterdir() if p.is_file()]
        hint = f" It holds {len(loose)} loose file(s) and no subfolders." if loose else ""
        raise DataError(
            f"Empty image folder: {str(root)!r} has no class subfolders.{hint} Expected "
            "one subfolder per class, e.g. flowers/daisy/*.jpg and flowers/rose/*.jpg."
        )
    if len(class_names) < 2:
        raise DataError(
            f"{description} has a single class folder ({class_names[0]!r}); transfer "
            "learning needs at least 2 classes. Add one subfolder per class."
        )
    if not paths:
        other = listing.unsupported
        found = (
            f" It holds {len(other)} image(s) in a format TensorFlow does not read (e.g. "
            f"{os.path.basename(other[0])!r}): convert them to PNG or JPEG."
            if other
            else ""
        )
        raise DataError(
            f"{description} has class folders {class_names} but no image files in "
            f"them. Expected files ending in {', '.join(IMAGE_EXTENSIONS)}.{found}"
        )
    labels_np = np.asarray(labels, dtype="int64")
    side = storage if cache and _fits_in_memory(len(paths), storage, description) else None
    ok, store = _first_pass(paths, side)
    keys = np.flatnonzero(ok)
    skipped = [paths[i] for i in np.flatnonzero(~ok)] + listing.unsupported
    if len(keys):  # with none readable at all, `_read` names the failed files instead
        class_names, labels_np = _no_empty_class(
            class_names, labels_np, labels_np[keys], description, drop_empty
        )
    if store is not None:
        return _Part(
            np.arange(len(keys)),
            labels_np[keys],
            class_names,
            description,
            store=store,
            skipped=skipped,
        )
    return _Part(
        np.asarray(paths, dtype=object)[keys],
        labels_np[keys],
        class_names,
        description,
        skipped=skipped,
    )


def _no_empty_class(
    class_names: list[str],
    labels: np.ndarray,
    readable: np.ndarray,
    description: str,
    drop: bool,
) -> tuple[list[str], np.ndarray]:
    """Refuse a class folder with no readable image (a class the model never sees), or,
    with `drop`, leave it out with a warning: the class names and `labels` renumbered."""
    counts = np.bincount(readable, minlength=len(class_names))
    empty = [name for name, n in zip(class_names, counts, strict=True) if n == 0]
    if not empty:
        return class_names, labels
    why = (
        f"{description}: class folder(s) {empty} hold no readable image (no file ending in "
        f"{', '.join(IMAGE_EXTENSIONS)}, or only corrupt ones)"
    )
    if not drop:
        raise DataError(
            f"{why}. A class the model never sees cannot be learned: add images to it, move "
            "the folder out of the data folder, or pass --drop-empty-classes "
            "(`drop_empty_classes=True`) to leave it out."
        )
    warnings.warn(
        f"{why}; left out (drop_empty_classes): the model has {len(class_names) - len(empty)} "
        "classes.",
        DataWarning,
        stacklevel=5,
    )
    kept = counts > 0
    renumber = np.cumsum(kept) - 1  # old class index -> new one (for kept classes)
    return [n for n, k in zip(class_names, kept, strict=True) if k], renumber[labels]


def read_image(path: str | os.PathLike, side: int) -> np.ndarray:
    """One image file exactly as training stores it, as float32 `(side, side, 3)` RGB 0-255.

    The same steps as the training and validation pipelines: decoded as RGB (a JPEG whose
    shorter side is 2, 4 or 8 times `side` at that fraction of its size, by libjpeg),
    resized bilinearly to `side` x `side`, rounded to whole grey levels. `predict` and
    `evaluate` read files with it, so a model sees at inference what it saw in training.
    Raises `tf.errors.InvalidArgumentError` for a file that does not decode.
    """
    import tensorflow as tf

    image = _decode_file(tf.constant(os.fspath(path)), at_least=int(side))
    resized = _to_uint8(_resize(tf.cast(image, tf.float32), int(side), "bilinear"))
    return resized.numpy().astype("float32")


def _first_pass(paths: list[str], side: int | None) -> tuple[np.ndarray, Any]:
    """Decode every file once in parallel: which ones are images, and (with `side`) the
    images resized to `side` x `side` as one uint8 tensor, in file order."""
    import tensorflow as tf

    @_plain
    def decode(index, path):
        if side is None:
            return index, tf.shape(_decode_file(path))  # the output keeps the decode alive
        image = _decode_file(path, at_least=side)
        return index, _to_uint8(_resize(tf.cast(image, tf.float32), side, "bilinear"))

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors().batch(256).prefetch(2)
    ok = np.zeros(len(paths), dtype=bool)
    chunks = []
    with tf.device("/CPU:0"):
        for index, images in ds:  # eager tensors: no numpy copies of the images
            ok[index.numpy()] = True
            chunks.append(images)
        if side is None:
            return ok, None
        if not chunks:
            return ok, tf.zeros((0, side, side, 3), tf.uint8)
        return ok, chunks[0] if len(chunks) == 1 else tf.concat(chunks, axis=0)


def _read_arrays(x: Any, y: Any) -> _Part:
    import tensorflow as tf

    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 2, 3, 4):
        raise DataError(
            "Expected numpy images of shape (N, H, W), (N, H, W, 1), (N, H, W, 3) or "
            f"(N, H, W, 4). Received: x.shape={x.shape}"
        )
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"Expected integer class labels of shape ({len(x)},). Received: y.shape={y.shape}, "
            f"dtype={y.dtype}. Convert one-hot labels with y.argmax(-1)."
        )
    if len(y) and y.min() < 0:
        raise DataError(f"Expected class labels >= 0. Received: min(y)={y.min()}")
    if x.shape[-1] in (1, 2):
        x = np.repeat(x[..., :1], 3, axis=-1)
    elif x.shape[-1] == 4:
        x = x[..., :3]
    if x.dtype != np.uint8:
        x = x.astype("float32")
        if x.size and 0.0 <= x.min() and x.max() <= 1.0:
            warnings.warn(
                f"The images are floats in [0, 1] (max {x.max():.3g}), but zoo-transfer "
                "models take raw RGB in 0-255 and normalise inside. Pass `x * 255` (or "
                "uint8 images).",
                DataWarning,
                stacklevel=3,
            )
    num_classes = int(y.max()) + 1 if len(y) else 0
    missing = sorted(set(range(num_classes)) - set(np.unique(y).tolist()))
    if missing:
        warnings.warn(
            f"The labels run 0-{num_classes - 1}, so the model gets {num_classes} classes, "
            f"but classes {missing[:20]}{' ...' if len(missing) > 20 else ''} have no "
            "sample here. Renumber the labels 0..K-1 (e.g. np.unique(y, return_inverse=True)"
            "[1]) unless those classes are only missing from this split.",
            DataWarning,
            stacklevel=3,
        )
    with tf.device("/CPU:0"):
        store = tf.convert_to_tensor(x)
    return _Part(
        np.arange(len(y)),
        y.astype("int64"),
        [str(i) for i in range(num_classes)],
        f"numpy arrays {x.shape}",
        store=store,
    )


def _tfds_broken(spec: str, err: BaseException) -> DataError:
    """tensorflow-datasets is installed but does not import (measured with TensorFlow
    2.16-2.19: tensorflow-metadata 1.21 needs a newer protobuf than they allow)."""
    first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    return DataError(
        f"Reading {spec!r} needs tensorflow-datasets, which is installed but fails to "
        f"import ({type(err).__name__}: {first}). With TensorFlow below 2.20 this is "
        "tensorflow-metadata 1.21 asking for a newer protobuf than TensorFlow allows: "
        "pip install 'tensorflow-metadata<1.21'."
    )


def _tfds(spec: str) -> tuple[Any, list[str] | None, str]:
    """`tfds:NAME[:SPLIT]` -> (dataset of (image, label), class names, description)."""
    name, _, split = spec[len("tfds:") :].partition(":")
    split = split or "train"
    try:
        import tensorflow_datasets as tfds
    except ModuleNotFoundError as err:
        if err.name != "tensorflow_datasets":
            raise _tfds_broken(spec, err) from None
        raise DataError(
            f"Reading {spec!r} needs tensorflow-datasets: pip install tensorflow-datasets"
        ) from err
    except (ImportError, TypeError) as err:  # protobuf too old for tensorflow-metadata
        raise _tfds_broken(spec, err) from None
    data_dir = os.environ.get("TFDS_DATA_DIR") or None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as err:  # DatasetNotFoundError, or a malformed name
        close = difflib.get_close_matches(name, tfds.list_builders(with_community_datasets=False))
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise DataError(
            f"Unknown TensorFlow Datasets name {name!r} in {spec!r}.{hint} Expected "
            "'tfds:NAME[:SPLIT]' with NAME from tfds.list_builders()."
        ) from err
    root = str(builder.data_dir_root)
    if not builder.is_prepared():
        raise DataError(
            f"TensorFlow Datasets {name!r} is not prepared in data_dir {root!r}, and "
            "zoo-transfer never downloads. On a connected machine run "
            f"`tfds build {name} --data_dir DIR` (or `tfds.builder({name!r}, "
            "data_dir=DIR).download_and_prepare()`), copy DIR here and set "
            "TFDS_DATA_DIR=DIR."
        )
    base = re.match(r"[\w-]*", split).group(0)
    if base not in builder.info.splits:
        raise DataError(
            f"TensorFlow Datasets {name!r} has no split {base!r}. Expected one of "
            f"{sorted(builder.info.splits)}. Received: {spec!r}"
        )
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2:
        raise DataError(
            f"TensorFlow Datasets {name!r} has no (image, label) supervised keys. Read it "
            "with tfds.load and pass a tf.data.Dataset of (image, label) instead."
        )
    names = getattr(builder.info.features[keys[1]], "names", None)
    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    return ds, names, f"tfds:{name}:{split} (data_dir {root!r})"


def _read_dataset(
    ds: Any, class_names: list[str] | None, description: str, storage: int, cache: bool
) -> _Part:
    import tensorflow as tf

    spec = ds.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise DataError(
            f"Expected a {description} of (image, label) pairs. Received elements: {spec}"
        )
    image_spec, label_spec = spec
    if image_spec.shape.rank not in (2, 3, None):
        raise DataError(
            f"Expected unbatched images (H, W, C) in the {description}. Received image "
            f"shape {image_spec.shape}: call .unbatch() on it first."
        )
    if label_spec.shape.rank not in (0, None) or not label_spec.dtype.is_integer:
        raise DataError(
            f"Expected integer class labels of shape () in the {description}. Received: "
            f"{label_spec}. Map one-hot labels with tf.argmax(label)."
        )
    count = int(ds.cardinality())
    side = (
        storage if cache and (count < 0 or _fits_in_memory(count, storage, description)) else None
    )
    if side is not None:

        @_plain
        def to_store(image, label):
            image = _resize(tf.cast(_to_rgb(image), tf.float32), side, "bilinear")
            return _to_uint8(image), label

        batches = ds.map(to_store, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        chunks, labels = [], []
        with tf.device("/CPU:0"):
            for images, label in batches.batch(256).prefetch(2):
                chunks.append(images)
                labels.append(label.numpy())
            if not chunks:
                store = tf.zeros((0, side, side, 3), tf.uint8)
            else:
                store = chunks[0] if len(chunks) == 1 else tf.concat(chunks, axis=0)
        labels_np = np.concatenate(labels) if labels else np.zeros(0, "int64")
        keys = np.arange(len(labels_np))
    else:
        store = None
        labels_np = np.fromiter(
            ds.map(_plain(lambda image, label: label)).as_numpy_iterator(), dtype="int64"
        )
        keys = np.arange(len(labels_np))
    if class_names is None:
        class_names = [str(i) for i in range(int(labels_np.max()) + 1 if len(labels_np) else 0)]
    return _Part(
        keys,
        labels_np.astype("int64"),
        list(class_names),
        description,
        store=store,
        dataset=None if store is not None else ds,
    )


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


# ---------------------------------------------------------------------------------------
# Splitting and per-batch maps


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


def _batch_map(layers: list[Any], label_mode: str, num_classes: int) -> Callable | None:
    import tensorflow as tf

    if not layers and label_mode == "int":
        return None

    @_plain
    def apply(images, labels):
        if label_mode == "categorical":
            labels = tf.one_hot(labels, num_classes, dtype=tf.float32)
        if layers and label_mode == "categorical":
            data = {"images": images, "labels": labels}  # mixing layers mix both
            for layer in layers:
                data = layer(data, training=True)
            images, labels = data["images"], data["labels"]
        else:
            for layer in layers:  # images only: integer labels stay integers
                images = layer(images, training=True)
        if layers:
            images = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0)
        return images, labels

    return apply


# ---------------------------------------------------------------------------------------
# Small tensor helpers (called inside tf.data functions)


def _plain(fn: Callable) -> Callable:
    """`fn` traced as written: no AutoGraph pass (it only branches on static values)."""
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(fn)


def _decode_file(path: Any, at_least: int | None = None) -> Any:
    """Decode an image file as RGB uint8. With `at_least`, a JPEG whose shorter side is
    2, 4 or 8 times `at_least` or more is decoded at 1/2, 1/4 or 1/8 scale by libjpeg
    (far faster for photos; the DCT scaling averages pixels, no aliasing)."""
    import tensorflow as tf

    data = tf.io.read_file(path)
    if at_least is None:
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    def full():
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    def jpeg():
        shape = tf.image.extract_jpeg_shape(data)
        short = tf.minimum(shape[0], shape[1])
        index = tf.reduce_sum(tf.cast(short >= at_least * tf.constant([2, 4, 8]), tf.int32))
        return tf.switch_case(
            index,
            [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r) for r in (1, 2, 4, 8)],
        )

    image = tf.cond(tf.strings.substr(data, 0, 3) == b"\xff\xd8\xff", jpeg, full)
    image.set_shape([None, None, 3])
    return image


def _to_rgb(image: Any) -> Any:
    """Grayscale (H, W) or (H, W, 1), gray + alpha and RGBA images as (H, W, 3)."""
    import tensorflow as tf

    if image.shape.rank == 2:
        image = image[..., None]
    channels = image.shape[-1]
    if channels == 3:
        return image
    if channels in (1, 2):
        return tf.tile(image[..., :1], [1, 1, 3])
    if channels == 4:
        return image[..., :3]
    rgb = tf.cond(
        tf.shape(image)[-1] < 3,
        lambda: tf.tile(image[..., :1], [1, 1, 3]),
        lambda: image[..., :3],
    )
    rgb.set_shape([None, None, 3])
    return rgb


def _resize(image: Any, side: Any, method: str) -> Any:
    """`image` (float, one image or a batch) as `side` x `side`; unchanged if it already is."""
    import tensorflow as tf

    target = tf.stack([side, side])
    shape = tf.shape(image)
    same = tf.reduce_all(tf.equal(shape[-3:-1], target))
    return tf.cond(same, lambda: image, lambda: tf.image.resize(image, target, method=method))


def _to_uint8(image: Any) -> Any:
    import tensorflow as tf

    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


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


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]  # a square (side, side)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"Expected `{name}` to be a positive int. Received: {name}={value!r}")
    return int(value)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{type(value).__name__} {text[:60]}..."
