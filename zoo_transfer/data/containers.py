"""Resizable containers: images and labels batched at a size that can change between epochs.

`ResizableImages` wraps images and labels in a `tf.data` pipeline that resizes every
image to `images.size`, a TensorFlow variable the pipeline reads as each batch is made.
`ProgressiveResizing` is bound to it explicitly and changes the size at the start of an
epoch, before Keras creates that epoch's iterator, so no batch of the old size can come
out of the prefetch buffer afterwards. `ResizableArrays` (`zoo_transfer.data.arrays`)
does the same without TensorFlow (the JAX, PyTorch and numpy backends).

Both satisfy `Resizable`, the protocol that names what the callbacks use of them.
`load` (`zoo_transfer.data.sources`) builds its pipelines with
`ResizableImages.from_keys` on TensorFlow and `ResizableArrays` on the other backends;
nothing outside a class writes its private fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from zoo_transfer.data.image_ops import _plain, _resize
from zoo_transfer.errors import BuildArgumentError

_STREAM_SHUFFLE_BUFFER = 1024  # decoded images a streamed tf.data source may hold


@runtime_checkable
class Resizable(Protocol):
    """What the callbacks use of a resizable source (`ResizableImages`, `ResizableArrays`).

    `ProgressiveResizing` calls `set_size` as an epoch begins, and checks before training
    that `fit` runs `batches_per_pass()` steps per epoch (a repeated pipeline would leak
    batches of the old size into the next stage). `EpochSeeding` calls `set_epoch`, so
    that a resumed `fit` draws the batches an uninterrupted one would have. `fit` takes
    `dataset()`, batches of `batch_size` images.
    """

    batch_size: int

    def set_size(self, size: int) -> None:
        """Make the batches made from now on `size` x `size`."""
        ...

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass draw epoch `epoch`'s order (and augmentation)."""
        ...

    def batches_per_pass(self) -> int | None:
        """Batches in one pass, or None when unknown."""
        ...

    def dataset(self) -> Any:
        """The batches of one pass, for `fit`, `evaluate` and `predict`."""
        ...


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
        interpolation, antialias: how images are resized (`tf.image.resize`), the input
            spec's (`zoo_transfer.input_spec`); default bilinear, no antialiasing.

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
        antialias: bool = False,
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
        self.antialias = bool(antialias)
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

    @classmethod
    def from_keys(
        cls,
        source: Any,
        *,
        size: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        drop_remainder: bool,
        rows: Any = None,
        store: Any = None,
        decode: Callable | None = None,
        batch_map: Callable | None = None,
        plain_map: Callable | None = None,
        augmentation: Sequence[Any] = (),
        shuffle_buffer: int | None = None,
        interpolation: str = "bilinear",
        antialias: bool = False,
    ) -> ResizableImages:
        """Images that `source` names by key, with their per-batch map: how `load` makes them.

        Args:
            source: unbatched `tf.data.Dataset` of `(key, label)`. A key is a row of
                `store`, a file path that `decode` reads, or an image of a streamed
                source that `decode` makes RGB.
            size, batch_size, shuffle, seed, drop_remainder: as for the constructor.
            rows: the `(keys, labels)` tensors `source` is made of, when it has random
                access: each epoch is then a permutation of them drawn from
                `(seed, epoch)`. `None` for a streamed source (a shuffle buffer).
            store: `(N, S, S, 3)` uint8 tensor that integer keys index, or `None`.
            decode: key -> image, per element after the shuffle (`None` with a store).
            batch_map: `(images, labels)` -> the same, per batch (augmentation, one-hot
                labels), or `None`.
            plain_map: `batch_map` without the augmentation, which `in_order` applies.
            augmentation: the seeded layers `batch_map` calls, reseeded every epoch.
            shuffle_buffer: the shuffle buffer of a streamed source (`None`: its length).
            interpolation, antialias: how batches are resized (the input spec's).
        """
        images = cls(
            source,
            size=size,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_remainder=drop_remainder,
            interpolation=interpolation,
            antialias=antialias,
        )
        images._store, images._decode = store, decode
        images._batch_map, images._shuffle_buffer = batch_map, shuffle_buffer
        images._rows, images._augmentation = rows, list(augmentation)
        images._plain_map = plain_map
        return images

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

    def batches_per_pass(self) -> int | None:
        """Batches in one pass (None when unknown): a partial last one counts unless
        `drop_remainder`."""
        n = self.num_images
        if not n:
            return None
        return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

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

        size, method, antialias = self.size, self.interpolation, self.antialias
        parallel = {"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True}

        def resize(image):
            side = size.read_value()
            return _resize(tf.cast(image, tf.float32), side, method, antialias)

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
