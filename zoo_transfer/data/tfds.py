"""TensorFlow Datasets names (`tfds:NAME[:SPLIT]`) and `tf.data.Dataset` sources.

`_tfds` resolves a name to a prepared dataset, never downloading, and says how to fix
each way that can fail (not installed, not importable, unknown name, not prepared, no
such split). `_read_dataset` reads a dataset of `(image, label)` into a `_Part`: with
the cache, every image converted to RGB and resized once into a uint8 store; without
it, only the labels, and the images are streamed every epoch (`_Part.pipeline` picks
them by position).
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

import numpy as np

from zoo_transfer.data.image_ops import _method, _plain, _resize, _to_rgb, _to_uint8
from zoo_transfer.data.parts import _fits_in_memory, _Part
from zoo_transfer.errors import DataError
from zoo_transfer.input_spec import InputSpec


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
    ds: Any,
    class_names: list[str] | None,
    description: str,
    storage: int,
    cache: bool,
    input_spec: InputSpec | None = None,
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
            image = _resize(tf.cast(_to_rgb(image), tf.float32), side, *_method(input_spec))
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
