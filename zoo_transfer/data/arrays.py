"""`ResizableArrays`: the resizable container of the backends without TensorFlow.

In-memory arrays or image files read with `zoo_transfer.data.pil_ops`, batched at a
size that can change between epochs, with the same per-batch augmentation and label
mode as `ResizableImages` (`zoo_transfer.data.containers`, which also holds the
`Resizable` protocol both satisfy). Its Keras `PyDataset` class is made on first use
(`_array_batches_class`), so that importing this module imports neither Keras nor
TensorFlow.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from zoo_transfer.errors import BuildArgumentError


class ResizableArrays:
    """Images and labels, batched at a size that can change between epochs, without
    TensorFlow: the `ResizableImages` of the JAX, PyTorch and numpy backends.

    The images are resized once per size, with `keras.ops.image.resize` (in chunks),
    and kept at the current size (as they are at their own size), so an epoch only
    slices batches out of memory. `from_files` streams from image files instead,
    decoding and resizing every batch. `dataset()` gives the `keras.utils.PyDataset` to
    pass to `fit`; `ProgressiveResizing` and `EpochSeeding` accept this class as they
    accept `ResizableImages`. `zoo_transfer.data.load` makes them on the other backends.

    Each batch is augmented (training only) by the seeded Keras layers of
    `augmentation`, reseeded from `(seed, epoch, batch index)`: epoch `e`'s batches are
    the same in any process, so a resumed `fit` draws what an uninterrupted one did.

    Args:
        images: `(N, H, W, 3)` array of raw RGB 0-255 (any H, W).
        labels: `(N,)` integer array (or `(N, C)` one-hot).
        size: the initial square side in pixels.
        batch_size: batch size.
        shuffle: reshuffle every epoch, deterministically from `seed`.
        seed: seed of the shuffle and of the augmentation.
        interpolation: `keras.ops.image.resize` interpolation.
        antialias: filter before downsizing (the input spec's `antialias`).
        drop_remainder: drop the last partial batch (the default), so every batch has
            one static shape and a jitted train step compiles once per size.
        augmentation: Keras layers applied to every batch in order, such as
            `augmentation_layers("light", seed)`; default none.
        num_classes: give one-hot float32 labels of this many classes (`None`: the
            labels as they are). Label-mixing layers (`MixUp`) need them.

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
        antialias: bool = False,
        augmentation: Sequence[Any] = (),
        num_classes: int | None = None,
    ):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise BuildArgumentError(
                f"Expected images of shape (N, H, W, 3). Received: {images.shape}. "
                "Convert grayscale with np.repeat(x, 3, axis=-1)."
            )
        self._images: np.ndarray | None = images
        self._paths: list[str] | None = None  # images decoded per batch (`from_files`)
        self._setup(len(images), labels, size, batch_size, shuffle, seed, interpolation)
        self._options(drop_remainder, antialias, augmentation, num_classes)
        self.set_size(size)

    @classmethod
    def from_files(
        cls,
        paths: Sequence[str | os.PathLike],
        labels: Any,
        *,
        size: int,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int = 0,
        interpolation: str = "bilinear",
        drop_remainder: bool = True,
        antialias: bool = False,
        augmentation: Sequence[Any] = (),
        num_classes: int | None = None,
    ) -> ResizableArrays:
        """Image files decoded every batch (for data sets larger than memory), with the
        Pillow ops of `zoo_transfer.data.pil_ops`: each file whole, resized straight to
        the current size. Arguments as for the constructor; `paths` must all decode.
        """
        arrays = cls.__new__(cls)
        arrays._images, arrays._paths = None, [os.fspath(p) for p in paths]
        arrays._setup(len(arrays._paths), labels, size, batch_size, shuffle, seed, interpolation)
        arrays._options(drop_remainder, antialias, augmentation, num_classes)
        arrays.set_size(size)
        return arrays

    def _setup(
        self,
        count: int,
        labels: Any,
        size: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        interpolation: str,
    ) -> None:
        labels = np.asarray(labels)
        if len(labels) != count:
            raise BuildArgumentError(
                f"Expected one label per image. Received: {count} images and {len(labels)} labels."
            )
        if isinstance(size, bool) or int(size) < 1 or int(batch_size) < 1:
            raise BuildArgumentError(
                f"Expected positive size and batch_size. Received: size={size}, "
                f"batch_size={batch_size}"
            )
        self.batch_size = int(batch_size)
        self.labels = labels
        self.shuffle, self.seed, self.interpolation = shuffle, seed, interpolation
        self.epoch = 0  # reshuffles advance it
        self._multiple = 1  # batches divide evenly over this many devices (`split_evenly`)
        self.size = 0
        self._store: np.ndarray | None = None  # the images at `size` (None from files)

    def _options(
        self,
        drop_remainder: bool,
        antialias: bool,
        augmentation: Sequence[Any],
        num_classes: int | None,
    ) -> None:
        if drop_remainder and len(self.labels) < self.batch_size:
            raise BuildArgumentError(
                f"Expected at least batch_size={self.batch_size} images with "
                f"drop_remainder=True. Received: {len(self.labels)} images. Lower batch_size "
                "or pass drop_remainder=False."
            )
        if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
            raise BuildArgumentError(
                f"Expected a positive num_classes. Received: num_classes={num_classes!r}"
            )
        self.drop_remainder = bool(drop_remainder)
        self.antialias = bool(antialias)
        self.num_classes = None if num_classes is None else int(num_classes)
        self._augmentation = list(augmentation)
        self._order = self._permutation()

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self.labels), self.batch_size)
        if self.drop_remainder:
            return full
        return full + (1 if rest - rest % self._multiple else 0)

    def split_evenly(self, devices: int) -> int:
        """Make every batch divide evenly over `devices` (a data-parallel step splits
        each batch across them): the last partial batch is cut down to a multiple of
        `devices`. Returns how many images one pass now leaves out (fewer than
        `devices`); `in_order()` still reads every image."""
        self._multiple = max(int(devices), 1)
        rest = len(self.labels) % self.batch_size
        return 0 if self.drop_remainder else rest % self._multiple

    @property
    def num_images(self) -> int:
        """How many images one pass yields before batching."""
        return len(self.labels)

    def batches_per_pass(self) -> int:
        """Batches in one pass: `len(self)`."""
        return len(self)

    def in_order(self) -> ResizableArrays:
        """These images once each, in their stored order, without augmentation.

        For reading every image as it is (backbone features, a linear probe, scoring):
        no shuffle, no dropped last batch, labels as training gets them, at the current
        size. The copy shares the images and never advances this one's epoch.
        """
        import copy

        once = copy.copy(self)
        once.shuffle, once.drop_remainder, once._augmentation = False, False, []
        once._multiple = 1
        once._order = once._permutation()
        return once

    def set_size(self, size: int) -> None:
        """Resize the stored images to `size` x `size` for the batches made from now on."""
        size = int(size)
        if size < 1:
            raise BuildArgumentError(f"Expected a positive size. Received: size={size}")
        if size == self.size:
            return
        if self._images is None:  # from files: each batch is resized as it is read
            self.size = size
            return
        if self._images.shape[1:3] == (size, size):
            store = self._images  # as it is: a batch becomes float32 when it is sliced
        else:
            import keras

            chunks = [
                keras.ops.convert_to_numpy(
                    keras.ops.image.resize(
                        self._images[i : i + self._CHUNK].astype("float32"),
                        (size, size),
                        interpolation=self.interpolation,
                        antialias=self.antialias,
                    )
                )
                for i in range(0, len(self._images), self._CHUNK)
            ]
            store = np.concatenate(chunks).astype("float32", copy=False)
        self._store, self.size = store, size  # swapped in whole: readers see one size

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch `index` of the current epoch, at the current size: float32 images, and
        the labels (one-hot float32 with `num_classes`)."""
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} is out of range: this epoch has {len(self)}.")
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        rows = rows[: len(rows) - len(rows) % self._multiple]
        if self._paths is not None:
            from zoo_transfer.data.pil_ops import _read_batch

            paths = [self._paths[r] for r in rows]
            images = _read_batch(paths, self.size, self.interpolation, self.antialias)
        else:
            images = self._store[rows].astype("float32", copy=False)
        labels = self.labels[rows]
        if self.num_classes is not None and labels.ndim == 1:
            labels = np.eye(self.num_classes, dtype="float32")[labels]
        if self._augmentation:
            images, labels = self._augment(images, labels, index)
        return images, labels

    def _augment(
        self, images: np.ndarray, labels: np.ndarray, index: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Batch `index` through the augmentation layers, each reseeded from `(seed, epoch,
        index, layer)` first, as `augment._batch_map` does in the tf.data pipelines."""
        import keras

        seeds = np.random.SeedSequence([int(self.seed) % 2**32, self.epoch, index])
        firsts = seeds.generate_state(len(self._augmentation))
        with _AUGMENTING:  # PyDataset workers may share the layers' generators
            for layer, first in zip(self._augmentation, firsts, strict=True):
                generator = getattr(layer, "generator", None)
                if generator is not None:
                    state = np.array([first % 2**31, 0])
                    generator.state.assign(
                        keras.ops.convert_to_tensor(state, dtype=generator.state.dtype)
                    )
            if self.num_classes is not None:
                data = {"images": images, "labels": labels}  # mixing layers mix both
                for layer in self._augmentation:
                    data = layer(data, training=True)
                images, labels = data["images"], data["labels"]
                labels = keras.ops.convert_to_numpy(labels).astype("float32")
            else:
                for layer in self._augmentation:  # images only: integer labels stay
                    images = layer(images, training=True)
        images = keras.ops.convert_to_numpy(images).astype("float32", copy=False)
        return np.clip(images, 0.0, 255.0), labels

    def next_epoch(self) -> None:
        """Draw the next epoch's order (Keras calls it at the end of every epoch)."""
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Use epoch `epoch`'s order and augmentation, functions of `(seed, epoch)` alone
        (a resumed `fit`)."""
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

        if self.num_classes is not None:
            labels = tf.TensorSpec((None, self.num_classes), tf.float32)
        else:
            labels = tf.TensorSpec((None, *self.labels.shape[1:]), tf.as_dtype(self.labels.dtype))
        images = tf.TensorSpec((None, None, None, 3), tf.float32)
        ds = tf.data.Dataset.from_generator(epoch, output_signature=(images, labels))
        return ds.apply(tf.data.experimental.assert_cardinality(len(self)))

    def _permutation(self) -> np.ndarray:
        n = len(self.labels)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)


_AUGMENTING = threading.Lock()


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
