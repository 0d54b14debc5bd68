"""Augmentation: the presets, their Keras layers, and the per-batch map that applies them.

Augmentation runs in the pipeline on the training split only, after the resize, with
Keras core layers (`augmentation_layers`). It is applied one batch at a time in order, so
the seeded layers draw the same random numbers for the same seed: the same `seed` gives
the same batches (`ResizableImages` reseeds the layers as each epoch begins). A preset
whose layers mix labels (`_MIXING_PRESETS`) makes `load` use one-hot labels, which
`_batch_map` makes batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zoo_transfer.data.image_ops import _plain
from zoo_transfer.errors import DataError

AUGMENT_PRESETS = ("none", "light", "medium", "heavy")
_MIXING_PRESETS = ("heavy",)  # presets whose layers mix labels: one-hot labels


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
