"""Sources and `load`: read a data source into batched training and validation pipelines.

`load(source, image_size=...)` reads a folder with one subfolder per class, a
`tfds:NAME[:SPLIT]` TensorFlow Datasets name, a numpy `(x, y)` pair or an unbatched
`tf.data.Dataset` of `(image, label)`, and returns `Splits`: batched training and
validation datasets of raw RGB 0-255 float32 images, the class names, and the files it
skipped. This module holds `load`, `Splits` and the folder and numpy readers; the
TensorFlow Datasets and `tf.data` readers are in `zoo_transfer.data.tfds`, and what
follows reading (splitting, the memory check, the pipeline) in `zoo_transfer.data.parts`.

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
With the cache, JPEG photos much larger than the storage size are decoded at a fraction
of their size by libjpeg (see `zoo_transfer.data.image_ops`).

Corrupt files. The first pass decodes every file with `ignore_errors` and carries each
file's index, so the files that did not survive are known before training starts: they
are left out of both splits, listed in `Splits.skipped`, and reported in one
`DataWarning`. No epoch can fail half-way on a bad file.

Other backends. On JAX, PyTorch or numpy (`KERAS_BACKEND`), `load` imports no
TensorFlow: folders are read with `zoo_transfer.data.pil_ops` (Pillow, the same decoding
and skipping rules, in a thread pool) into a numpy uint8 store, split alike (same seed,
same split), and batched by `ResizableArrays`, whose `dataset()` is a Keras `PyDataset`;
`cache=False` (or a store too large for memory) decodes the files every batch. TensorFlow
Datasets names and `tf.data` sources need the TensorFlow backend.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.data.arrays import ResizableArrays
from zoo_transfer.data.augment import _MIXING_PRESETS, _batch_map, augmentation_layers
from zoo_transfer.data.containers import ResizableImages
from zoo_transfer.data.image_ops import _first_pass, _tensorflow_backend
from zoo_transfer.data.parts import FileList, _fits_in_memory, _Part, _split
from zoo_transfer.data.pil_ops import _first_pass as _pil_first_pass
from zoo_transfer.data.tfds import _read_dataset, _tfds
from zoo_transfer.errors import DataError, DataWarning
from zoo_transfer.folders import IMAGE_EXTENSIONS, list_image_folder
from zoo_transfer.input_spec import InputSpec


@dataclass(repr=False)
class Splits:
    """What `load` returns; unpacks as `train, val, class_names = load(...)`.

    Args:
        train: batched `tf.data.Dataset` of `(images, labels)`, images raw RGB 0-255
            float32 of shape `(batch, size, size, 3)` (a `keras.utils.PyDataset` on the
            other backends).
        val: the same for validation (never augmented, never shuffled), or `None`.
        class_names: class `i` is `class_names[i]`.
        train_images: the `ResizableImages` behind `train`, for `ProgressiveResizing`
            (a `ResizableArrays` on the other backends).
        val_images: the `ResizableImages` behind `val`, or `None`.
        skipped: files left out because they could not be decoded.
        num_train: training images (the last partial batch is dropped each epoch).
        num_val: validation images (all of them are used).
        label_mode: `"int"` (class indices) or `"categorical"` (one-hot, when the
            augmentation mixes labels).
        source: what was read, in words.
        augment: the augmentation preset of the training split (`load(augment=)`).
        train_files: the image files of the training split and their labels, in the
            order `train_images.in_order()` reads them (`FileList`); None unless the
            source is a folder. (Backbone features stored by `zoo-transfer rank` are
            found by these files.)
        val_files: the same for the validation split.

    ```python
    splits = load("flowers/", image_size=160, validation_split=0.2)
    train, val, class_names = splits
    ```
    """

    train: Any
    val: Any
    class_names: list[str]
    train_images: ResizableImages | ResizableArrays
    val_images: ResizableImages | ResizableArrays | None
    skipped: list[str] = field(default_factory=list)
    num_train: int = 0
    num_val: int = 0
    label_mode: str = "int"
    source: str = ""
    augment: str = "none"
    train_files: FileList | None = None
    val_files: FileList | None = None

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


def load(
    source: Any,
    *,
    image_size: int | None = None,
    batch_size: int = 32,
    validation_split: float | None = None,
    validation: Any = None,
    augment: str = "light",
    seed: int = 0,
    cache: bool = True,
    storage_size: int | None = None,
    drop_empty_classes: bool = False,
    input_spec: InputSpec | None = None,
) -> Splits:
    """Read images and labels into batched training (and validation) pipelines.

    Args:
        source: a folder with one subfolder per class (sorted names give the class
            indices, as in Keras); `"tfds:NAME[:SPLIT]"` (`SPLIT` defaults to `train`,
            slices such as `train[:80%]` work; read from `$TFDS_DATA_DIR` or the TFDS
            default folder, never downloaded); a numpy `(x, y)` pair with `x` of shape
            `(N, H, W[, C])` and integer `y`; or an unbatched `tf.data.Dataset` of
            `(image, integer label)`. Grayscale and RGBA images become RGB. Off the
            TensorFlow backend: a folder or a numpy pair.
        image_size: the square side, in pixels, of the images in every batch
            (default: the `input_spec`'s side).
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
        input_spec: `InputSpec`, how images are resized (interpolation, antialias),
            usually `InputSpec.from_card(card, side)`; the default is bilinear without
            antialiasing. Give the model file the same spec (`save_for_inference(...,
            input_spec=...)`) and `predict` reads files exactly as these pipelines do.

    Returns:
        `Splits`, which unpacks as `train, val, class_names`.

    ```python
    train, val, class_names = load("flowers/", image_size=160, validation_split=0.2)
    model.fit(train, validation_data=val, epochs=5)
    ```
    """
    if image_size is None and input_spec is None:
        raise DataError("Pass `image_size` (e.g. image_size=224) or `input_spec`.")
    image_size = _positive_int(input_spec.side if image_size is None else image_size, "image_size")
    if input_spec is not None and input_spec.side != image_size:
        raise DataError(
            f"image_size={image_size} disagrees with input_spec.side={input_spec.side}: "
            "pass one of them."
        )
    spec = input_spec or InputSpec(side=image_size)
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
    tensorflow = _tensorflow_backend()

    train = _read(source, storage, cache, drop_empty_classes, spec, tensorflow)
    skipped = list(train.skipped)
    val = None
    if validation is not None:
        val = _read(validation, storage, cache, drop_empty_classes, spec, tensorflow)
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

    train_images, val_images = _pipelines(
        train, val, image_size, batch_size, seed, layers, label_mode, spec, tensorflow
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
        train_files=train.file_list(),
        val_files=None if val is None else val.file_list(),
    )


def _pipelines(
    train: _Part,
    val: _Part | None,
    image_size: int,
    batch_size: int,
    seed: int,
    layers: list[Any],
    label_mode: str,
    spec: InputSpec,
    tensorflow: bool,
) -> tuple[Any, Any]:
    """The training and validation containers: `tf.data` pipelines on the TensorFlow
    backend, `ResizableArrays` on the others, augmented and labelled alike. Training is
    shuffled, augmented and drops its last partial batch; validation is none of these."""
    num_classes = len(train.class_names)

    def make(part: _Part, training: bool) -> Any:
        augmentation = layers if training else []
        options = {
            "shuffle": training,
            "seed": seed,
            "drop_remainder": training and part.count >= batch_size,
            "augmentation": augmentation,
            "spec": spec,
        }
        if not tensorflow:
            one_hot = num_classes if label_mode == "categorical" else None
            return part.arrays(image_size, batch_size, num_classes=one_hot, **options)
        return part.pipeline(
            image_size,
            batch_size,
            batch_map=_batch_map(augmentation, label_mode, num_classes),
            plain_map=_batch_map([], label_mode, num_classes),
            **options,
        )

    return make(train, True), None if val is None else make(val, False)


def _read(
    source: Any,
    storage: int,
    cache: bool,
    drop_empty: bool = False,
    spec: InputSpec | None = None,
    tensorflow: bool = True,
) -> _Part:
    if not tensorflow and (
        (isinstance(source, str) and source.startswith("tfds:"))
        or type(source).__module__.split(".")[0] == "tensorflow"
    ):
        import keras

        what = "TensorFlow Datasets names" if isinstance(source, str) else "tf.data datasets"
        raise DataError(
            f"Expected a folder or a numpy (x, y) pair on the {keras.backend.backend()} "
            f"backend: {what} need the TensorFlow backend. Received: {_describe(source)} "
            f"with KERAS_BACKEND={keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow, "
            "or pass a folder with one subfolder per class, or numpy arrays."
        )
    if isinstance(source, str) and source.startswith("tfds:"):
        part = _read_dataset(*_tfds(source), storage, cache, spec)
    elif isinstance(source, (str, os.PathLike)):
        part = _read_folder(Path(source), storage, cache, drop_empty, spec, tensorflow)
    elif tensorflow and _is_tf_dataset(source):
        part = _read_dataset(source, None, "tf.data.Dataset", storage, cache, spec)
    elif isinstance(source, (tuple, list)) and len(source) == 2:
        part = _read_arrays(*source, tensorflow=tensorflow)
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


def _is_tf_dataset(source: Any) -> bool:
    import tensorflow as tf

    return isinstance(source, tf.data.Dataset)


def _read_folder(
    root: Path,
    storage: int,
    cache: bool,
    drop_empty: bool = False,
    spec: InputSpec | None = None,
    tensorflow: bool = True,
) -> _Part:
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
    if tensorflow:
        ok, store = _first_pass(paths, side, spec)
    else:
        ok, store = _pil_first_pass(paths, side, spec)
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
            files=np.asarray(paths, dtype=object)[keys],
        )
    return _Part(
        np.asarray(paths, dtype=object)[keys],
        labels_np[keys],
        class_names,
        description,
        skipped=skipped,
        files=np.asarray(paths, dtype=object)[keys],
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


def _read_arrays(x: Any, y: Any, tensorflow: bool = True) -> _Part:
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
    store = x  # numpy off the TensorFlow backend
    if tensorflow:
        import tensorflow as tf

        with tf.device("/CPU:0"):
            store = tf.convert_to_tensor(x)
    return _Part(
        np.arange(len(y)),
        y.astype("int64"),
        [str(i) for i in range(num_classes)],
        f"numpy arrays {x.shape}",
        store=store,
    )


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]  # a square (side, side)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"Expected `{name}` to be a positive int. Received: {name}={value!r}")
    return int(value)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{type(value).__name__} {text[:60]}..."
