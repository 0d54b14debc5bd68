"""Input pipelines whose image size can change between epochs of one `fit`.

`ResizableImages` wraps raw RGB images (0-255) and labels in a `tf.data` pipeline that
resizes every image to `images.size`, a TensorFlow variable the pipeline reads as each
element is made. `ProgressiveResizing` is bound to it explicitly and changes the size at
the start of an epoch, before Keras creates that epoch's iterator, so no batch of the
old size can come out of the prefetch buffer afterwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo_transfer.errors import BuildArgumentError


class ResizableImages:
    """Raw images and labels, batched at a size that can change between epochs.

    Args:
        images: `(N, H, W, 3)` array of raw RGB 0-255 (any H, W), or a `tf.data.Dataset`
            of unbatched `(image, label)` pairs.
        labels: `(N,)` array when `images` is an array.
        size: the initial square side in pixels.
        batch_size: batch size; the last partial batch is dropped so every batch has a
            static shape (XLA and TPUs compile once per size, not per batch).
        shuffle: reshuffle every epoch, deterministically from `seed`.

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
    ):
        import tensorflow as tf

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
            self._source = tf.data.Dataset.from_tensor_slices((images, labels))
        if int(size) < 1 or int(batch_size) < 1:
            raise BuildArgumentError(
                f"Expected positive size and batch_size. Received: {size}, {batch_size}"
            )
        self.size = tf.Variable(int(size), dtype=tf.int32, trainable=False, name="image_size")
        self.batch_size = int(batch_size)
        self.shuffle, self.seed, self.interpolation = shuffle, seed, interpolation

    def set_size(self, size: int) -> None:
        self.size.assign(int(size))

    def dataset(self) -> Any:
        """A finite `tf.data.Dataset` of `(images, labels)` batches at the current size.

        Do not `.repeat()` it: Keras would then keep one iterator (and its prefetched,
        old-size batches) across epochs; `ProgressiveResizing` refuses that setup.
        """
        import tensorflow as tf

        size = self.size
        method = self.interpolation

        def resize(image, label):
            side = size.read_value()
            image = tf.image.resize(
                tf.cast(image, tf.float32), tf.stack([side, side]), method=method
            )
            return image, label

        ds = self._source
        if self.shuffle:
            count = ds.cardinality()
            buffer = int(count) if count > 0 else 1024
            ds = ds.shuffle(buffer, seed=self.seed, reshuffle_each_iteration=True)
        ds = ds.map(resize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(self.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
