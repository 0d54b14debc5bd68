"""TensorFlow image ops: every decode, RGB conversion, resize and rounding of the data package.

They live in one module so that an image goes through the same steps wherever it is
read: the first pass that fills the cache (`_first_pass`), the `ResizableImages`
pipelines (`_resize` is the one place training resizes an image), the `tf.data`
sources, and `read_image`, which `predict` and `evaluate` use, so a model sees at
inference what it saw in training. `_plain` keeps AutoGraph off the functions that
`tf.data` traces.

Large JPEGs. With `at_least` (the storage size), a JPEG photo much larger than that is
decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (`decode_jpeg(ratio=...)`) when its
shorter side is at least that multiple of the size: several times faster, and the DCT
scaling averages pixels instead of skipping them.

On the other Keras backends (JAX, PyTorch, numpy) `read_image` and `load_image` use
their TensorFlow-free twins in `zoo_transfer.data.pil_ops`, which follow the same rules
(`_tensorflow_backend` chooses).

Every function imports TensorFlow when it runs, so importing this module does not.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.data.pil_ops import _load_image as _pil_load_image
from zoo_transfer.data.pil_ops import read_image as _pil_read_image
from zoo_transfer.errors import ArgumentError, ImageFileError
from zoo_transfer.input_spec import InputSpec


def _tensorflow_backend() -> bool:
    """Whether Keras runs on TensorFlow: the `tf` ops here, else `pil_ops` (no TensorFlow)."""
    import keras

    return keras.backend.backend() == "tensorflow"


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


def _resize(image: Any, side: Any, method: str = "bilinear", antialias: bool = False) -> Any:
    """`image` (float, one image or a batch) as `side` x `side`; unchanged if it already is.

    `method` and `antialias` come from the input spec (`zoo_transfer.input_spec`).
    """
    import tensorflow as tf

    target = tf.stack([side, side])
    shape = tf.shape(image)
    same = tf.reduce_all(tf.equal(shape[-3:-1], target))

    def resized():
        return tf.image.resize(image, target, method=method, antialias=antialias)

    return tf.cond(same, lambda: image, resized)


def _to_uint8(image: Any) -> Any:
    import tensorflow as tf

    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def read_image(path: str | os.PathLike, spec: InputSpec | int) -> np.ndarray:
    """One image file exactly as training stores it, as float32 `(side, side, 3)` RGB 0-255.

    The same steps as the training and validation pipelines: decoded as RGB (a JPEG whose
    shorter side is 2, 4 or 8 times the side at that fraction of its size, by libjpeg),
    resized to `spec.side` x `spec.side` by the spec's method, rounded to whole grey
    levels. `predict` and `evaluate` read files with it, so a model sees at inference
    what it saw in training. `spec` may be a bare side (the default resize). Raises
    `tf.errors.InvalidArgumentError` for a file that does not decode (`ImageFileError`
    on the other backends, which read it with `pil_ops`).
    """
    if not _tensorflow_backend():
        return _pil_read_image(path, spec)
    import tensorflow as tf

    spec = spec if isinstance(spec, InputSpec) else InputSpec(side=int(spec))
    image = _decode_file(tf.constant(os.fspath(path)), at_least=spec.side)
    image = _resize(tf.cast(image, tf.float32), spec.side, spec.interpolation, spec.antialias)
    return _to_uint8(image).numpy().astype("float32")


def load_image(
    path: str | os.PathLike,
    image_size: tuple[int, int] | None = None,
    input_spec: InputSpec | None = None,
) -> np.ndarray:
    """One image file as a float32 `(H, W, 3)` RGB array, 0-255, resized for the model.

    Grayscale is repeated to three channels, alpha is dropped, animations give their
    first frame. With `input_spec` (or a square `image_size`) the file is read exactly as
    training reads it (`read_image`: a large JPEG decoded at a fraction
    of its size, the spec's resize, whole grey levels), so inference sees what training
    saw; a non-square `image_size` is resized bilinearly to exactly that size (no crop).

    ```python
    load_image("rose.jpg", input_spec=InputSpec(side=224)).shape   # (224, 224, 3)
    ```
    """
    if input_spec is None and image_size is None:
        raise ArgumentError("Pass the image size or the input spec to read an image at.")
    height, width = (int(s) for s in (image_size or input_spec.image_size))
    if input_spec is None and height == width:
        input_spec = InputSpec(side=height)
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageFileError(f"Cannot read image {str(p)!r}: {exc.strerror or exc}.") from None
    if not _tensorflow_backend():  # pil_ops raises ImageFileError itself
        return _pil_load_image(data, str(p), height, width, input_spec)
    import tensorflow as tf

    try:
        if input_spec is not None and (height, width) == input_spec.image_size:
            return read_image(p, input_spec)
        img = tf.io.decode_image(data, channels=3, expand_animations=False)
        img = tf.image.resize(tf.cast(img, tf.float32), (height, width), method="bilinear")
        return np.round(np.clip(img.numpy(), 0.0, 255.0)).astype("float32")
    except (tf.errors.InvalidArgumentError, ValueError):
        raise ImageFileError(
            f"Cannot decode {str(p)!r} as an image. Expected a JPEG, PNG, BMP, GIF or WebP file."
        ) from None


def _first_pass(
    paths: list[str], side: int | None, spec: InputSpec | None = None
) -> tuple[np.ndarray, Any]:
    """Decode every file once in parallel: which ones are images, and (with `side`) the
    images resized to `side` x `side` (by `spec`'s method) as one uint8 tensor, in file
    order."""
    import tensorflow as tf

    method, antialias = _method(spec)

    @_plain
    def decode(index, path):
        if side is None:
            return index, tf.shape(_decode_file(path))  # the output keeps the decode alive
        image = _decode_file(path, at_least=side)
        return index, _to_uint8(_resize(tf.cast(image, tf.float32), side, method, antialias))

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


def _method(spec: InputSpec | None) -> tuple[str, bool]:
    """`(interpolation, antialias)` of `spec`; the defaults without one."""
    return ("bilinear", False) if spec is None else (spec.interpolation, spec.antialias)
