"""Inference: load a trained `.keras` file (or a zoo model), predict image files, evaluate.

Everything here feeds models raw RGB 0-255 pixels, as `zoo_transfer.build` models take
them: each image is decoded to RGB (grayscale and RGBA converted), resized to the
model's input size, and never normalised here (the model does that itself).

Class names travel with the model: `embed_labels` writes them into the `.keras` zip
(entry `zoo_transfer/labels.json`, which Keras ignores), and `read_labels` finds them
there or in a `labels.json` beside the file. ImageNet names ship with the package, so
`decode_predictions`-style output works offline.

```python
from zoo_transfer import predict
model, names, size = predict.load_for_inference("flowers.keras")
for p in predict.predict_files(model, ["rose.jpg"], class_names=names, image_size=size):
    print(p.path, p.top[0])                      # ('roses', 2, 0.93)
```
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from zoo_transfer.errors import (
    BuildArgumentError,
    ImageFileError,
    LabelMismatchError,
    ModelFileError,
)
from zoo_transfer.folders import IMAGE_EXTENSIONS, list_image_folder

LABELS_ENTRY = "zoo_transfer/labels.json"  # inside the .keras zip
LABELS_FILE = "labels.json"  # beside the .keras file
DEFAULT_IMAGE_SIZE = (224, 224)  # for models whose input takes any size
_WEIGHT_SUFFIXES = (".h5", ".hdf5")
_PATH_SUFFIXES = (".keras", ".zip", ".json", ".pb", *_WEIGHT_SUFFIXES)


# ------------------------------------------------------------------ ImageNet names
@lru_cache(maxsize=1)
def imagenet_class_index() -> tuple[tuple[str, str], ...]:
    """The 1000 ImageNet-1k classes as `(wnid, name)`, indexed like Keras' outputs.

    Read from the package's `assets/imagenet_class_index.json` (Keras' format), so
    no download is needed. Names are Keras' (`"great_white_shark"`).

    ```python
    imagenet_class_index()[2]   # ('n01484850', 'great_white_shark')
    ```
    """
    text = resources.files("zoo_transfer").joinpath("assets", "imagenet_class_index.json")
    data = json.loads(text.read_text(encoding="utf-8"))
    return tuple((data[str(i)][0], data[str(i)][1]) for i in range(len(data)))


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in output order, offline.

    ```python
    imagenet_class_names()[:3]   # ['tench', 'goldfish', 'great_white_shark']
    ```
    """
    return [name for _, name in imagenet_class_index()]


# ------------------------------------------------------------------ labels in .keras files
def _check_names(class_names: Any) -> list[str]:
    if isinstance(class_names, str) or not isinstance(class_names, (list, tuple)):
        raise LabelMismatchError(
            "Expected `class_names` as a list of strings, one per model output. "
            f"Received: class_names={class_names!r}"
        )
    names = [str(n) for n in class_names]
    if not names:
        raise LabelMismatchError("Expected at least one class name. Received: class_names=[]")
    return names


def embed_labels(
    keras_path: str | os.PathLike, class_names: Sequence[str], image_size: int | None = None
) -> None:
    """Store `class_names` inside the `.keras` file, as the zip entry `zoo_transfer/labels.json`.

    The file stays a valid Keras archive (`keras.saving.load_model` ignores the
    entry). Names already embedded are replaced. The file is rewritten through a
    temporary file beside it, so a failure leaves the original intact.

    Args:
        keras_path: a `.keras` file written by `model.save`.
        class_names: `list[str]`, the name of each output, in output order.
        image_size: the side the model was trained at, for a model that takes any
            size (progressive resizing); `predict` and `evaluate` then resize to it.

    ```python
    model.save("flowers.keras")
    embed_labels("flowers.keras", ["daisy", "roses", "tulips"])
    read_labels("flowers.keras")   # ['daisy', 'roses', 'tulips']
    ```
    """
    path = Path(keras_path)
    names = _check_names(class_names if isinstance(class_names, str) else list(class_names))
    _check_keras_file(path)
    meta: dict[str, Any] = {"labels": names}
    if image_size is not None:
        meta["image_size"] = int(image_size)
    payload = json.dumps(meta, ensure_ascii=False, indent=1)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
            for info in src.infolist():
                if info.filename != LABELS_ENTRY:
                    dst.writestr(info, src.read(info.filename))
            dst.writestr(LABELS_ENTRY, payload, compress_type=zipfile.ZIP_DEFLATED)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _labels_from_json(data: Any, source: str) -> list[str]:
    if isinstance(data, dict) and "labels" in data:
        data = data["labels"]
    elif isinstance(data, dict) and all(str(k).isdigit() for k in data):
        data = [data[k] for k in sorted(data, key=int)]
    if not isinstance(data, list) or not all(isinstance(n, (str, int)) for n in data):
        raise LabelMismatchError(
            f'{source}: expected a JSON list of class names (or {{"labels": [...]}}). '
            f"Received: {str(data)[:200]}"
        )
    return [str(n) for n in data]


def read_labels(keras_path: str | os.PathLike) -> list[str] | None:
    """The class names of a `.keras` file: embedded, else `labels.json` beside it, else None.

    Args:
        keras_path: a `.keras` file.

    ```python
    read_labels("flowers.keras")   # ['daisy', 'roses', 'tulips'], or None
    ```
    """
    path = Path(keras_path)
    try:
        with zipfile.ZipFile(path) as zf:
            if LABELS_ENTRY in zf.namelist():
                data = json.loads(zf.read(LABELS_ENTRY).decode("utf-8"))
                return _labels_from_json(data, f"{path}:{LABELS_ENTRY}")
    except (zipfile.BadZipFile, OSError):
        pass
    beside = path.parent / LABELS_FILE
    if beside.is_file():
        try:
            data = json.loads(beside.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise LabelMismatchError(f"{beside} is not valid JSON: {exc}") from None
        return _labels_from_json(data, str(beside))
    return None


# ------------------------------------------------------------------ loading models
class LoadedModel(NamedTuple):
    """What `load_for_inference` returns; unpacks as `model, class_names, image_size`."""

    model: Any
    class_names: list[str]
    image_size: tuple[int, int]


def _check_keras_file(path: Path) -> None:
    if not path.exists():
        raise ModelFileError(
            f"No model file at {str(path)!r}. Expected the path of a `.keras` file "
            "(written by `model.save('model.keras')`) or a zoo name such as "
            "'mobilenet.a025_224' (see `zoo-transfer list`)."
        )
    if path.is_dir() or path.suffix != ".keras" or not zipfile.is_zipfile(path):
        hint = ""
        if path.suffix in _WEIGHT_SUFFIXES:
            hint = (
                " It looks like a weights file: pass the zoo name of its architecture and "
                "the file as weights (CLI: `MODEL --weights FILE`)."
            )
        raise ModelFileError(
            f"Expected a Keras 3 `.keras` file (a zip written by `model.save`). Received: "
            f"{str(path)!r}.{hint} Save a model with `model.save('model.keras')`."
        )


def _looks_like_path(ref: str) -> bool:
    return os.sep in ref or "/" in ref or Path(ref).suffix.lower() in _PATH_SUFFIXES


def _num_outputs(model: Any) -> int:
    """How many classes a classifier's output names (a 1-unit sigmoid names 2)."""
    units = model.outputs[0].shape[-1]
    return 2 if units == 1 else int(units)


def _model_image_size(model: Any, default: Any = DEFAULT_IMAGE_SIZE) -> Any:
    """The `(height, width)` a model takes; `default` where it takes any size."""
    shape = tuple(model.inputs[0].shape)
    h, w = (shape[1], shape[2]) if len(shape) == 4 else (None, None)
    return (int(h), int(w)) if h and w else default


def crop_fraction_of(model: Any) -> float:
    """The centre-crop fraction of the card of `model`'s backbone (`crop_pct`), or 0.875."""
    from zoo_transfer.errors import NotATransferModelError
    from zoo_transfer.recipes.stages import find_backbone

    try:
        _, card = find_backbone(model)
    except NotATransferModelError:
        return DEFAULT_CROP_FRACTION
    return float(card.preprocessing.crop_pct)


def load_for_inference(
    model_ref: str | os.PathLike, *, weights: str | os.PathLike | None = None
) -> LoadedModel:
    """A model ready to predict, its class names and the image size it takes.

    Args:
        model_ref: a trained `.keras` file, or a zoo name (`"mobilenet.a025_224"`) for
            that model with its ImageNet classifier (`build(name, num_classes=None)`)
            and the ImageNet class names.
        weights: for a zoo name only: a weights file (`.h5`, `.weights.h5`) instead
            of `"imagenet"` from the Keras cache (offline machines).

    Returns a `LoadedModel(model, class_names, image_size)`. Class names of a `.keras`
    file come from `read_labels`; without any, they are `"0"`, `"1"`, ...

    Raises `ModelFileError` (missing file, not a `.keras`), `UnknownModelError` (no
    such zoo name) or `LabelMismatchError` (labels that do not fit the outputs).

    ```python
    model, names, size = load_for_inference("mobilenet.a025_224", weights="mn.weights.h5")
    ```
    """
    ref = os.fspath(model_ref)
    path = Path(ref)
    if path.exists() or _looks_like_path(ref):
        if weights is not None:
            raise BuildArgumentError(
                f"`weights` applies to zoo names only; {ref!r} is a model file that holds "
                f"its own weights. Received: weights={os.fspath(weights)!r}"
            )
        return _load_keras_file(path)
    import zoo_transfer
    from zoo_transfer.registry import get_card

    card = get_card(ref)  # UnknownModelError with suggestions
    model = zoo_transfer.build(
        ref, num_classes=None, weights="imagenet" if weights is None else os.fspath(weights)
    )
    names = imagenet_class_names() if card.num_classes == 1000 else None
    names = names or [str(i) for i in range(_num_outputs(model))]
    return LoadedModel(model, names, _model_image_size(model))


def _load_keras_file(path: Path) -> LoadedModel:
    _check_keras_file(path)
    import keras

    try:
        model = keras.saving.load_model(str(path), compile=False)  # inference needs none
    except Exception as exc:  # Keras raises many kinds for a bad archive
        raise ModelFileError(
            f"{path} could not be loaded as a Keras model ({type(exc).__name__}: "
            f"{str(exc)[:300]}). Expected a file written by Keras 3 `model.save`."
        ) from None
    n = _num_outputs(model)
    names = read_labels(path)
    if names is None:
        names = [str(i) for i in range(n)]
    elif len(names) != n:
        raise LabelMismatchError(
            f"{path} has {n} outputs but its labels name {len(names)} classes: "
            f"{names[:10]}. Re-embed the right names with "
            "`zoo_transfer.predict.embed_labels(path, names)`."
        )
    size = _model_image_size(model, default=None)
    trained = _embedded_image_size(path)
    if size is None:
        size = (trained, trained) if trained else DEFAULT_IMAGE_SIZE
    return LoadedModel(model, names, size)


def _embedded_image_size(path: Path) -> int | None:
    """The training side `embed_labels` stored in the `.keras` file, if any."""
    try:
        with zipfile.ZipFile(path) as zf:
            if LABELS_ENTRY in zf.namelist():
                data = json.loads(zf.read(LABELS_ENTRY).decode("utf-8"))
                if isinstance(data, dict) and isinstance(data.get("image_size"), int):
                    return data["image_size"]
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError):
        pass
    return None


# ------------------------------------------------------------------ images
def load_image(path: str | os.PathLike, image_size: tuple[int, int]) -> np.ndarray:
    """One image file as a float32 `(H, W, 3)` RGB array, 0-255, resized to `image_size`.

    Grayscale is repeated to three channels, alpha is dropped, animations give their
    first frame. For a square `image_size` the file is read exactly as training reads it
    (`zoo_transfer.data.read_image`: a large JPEG decoded at a fraction of its size,
    bilinear resize, whole grey levels), so inference sees what training saw; other sizes
    are resized bilinearly to exactly `image_size` the same way (no crop).

    ```python
    load_image("rose.jpg", (224, 224)).shape   # (224, 224, 3)
    ```
    """
    import tensorflow as tf

    from zoo_transfer.data import read_image

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageFileError(f"Cannot read image {str(p)!r}: {exc.strerror or exc}.") from None
    height, width = (int(s) for s in image_size)
    try:
        if height == width:
            return read_image(p, height)
        img = tf.io.decode_image(data, channels=3, expand_animations=False)
        img = tf.image.resize(tf.cast(img, tf.float32), (height, width), method="bilinear")
        return np.round(np.clip(img.numpy(), 0.0, 255.0)).astype("float32")
    except (tf.errors.InvalidArgumentError, ValueError):
        raise ImageFileError(
            f"Cannot decode {str(p)!r} as an image. Expected a JPEG, PNG, BMP, GIF or WebP file."
        ) from None


def _scores_to_probs(scores: np.ndarray) -> np.ndarray:
    """Class probabilities from a classifier's outputs (logits go through softmax)."""
    scores = np.asarray(scores, dtype="float64").reshape(len(scores), -1)
    if scores.shape[1] == 1:  # sigmoid: probability of class 1
        p = scores[:, 0]
        if p.min(initial=0.0) < 0.0 or p.max(initial=0.0) > 1.0:
            p = 1.0 / (1.0 + np.exp(-p))
        return np.stack([1.0 - p, p], axis=1)
    if scores.min(initial=0.0) < 0.0 or not np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
        z = np.exp(scores - scores.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    return scores


# each test-time augmentation: the views it averages, as indices into (the images, their
# centre crop, their mirror images, the mirrored crop); `tta_views` returns them in order
TTA_VIEWS = {"none": (0,), "flip": (0, 2), "crop": (0, 1), "flip+crop": (0, 1, 2, 3)}
TTA_CHOICES = tuple(TTA_VIEWS)
DEFAULT_CROP_FRACTION = 0.875  # the cards' usual `crop_pct`: ImageNet evaluation's centre crop


def _check_tta(tta: str) -> str:
    if tta not in TTA_CHOICES:
        raise BuildArgumentError(
            f"Expected tta to be one of {', '.join(TTA_CHOICES)}. Received: tta={tta!r}"
        )
    return tta


def tta_views(images: np.ndarray, tta: str, crop_fraction: float = DEFAULT_CROP_FRACTION):
    """The views of a batch that test-time augmentation averages over.

    `"flip"`: the images and their mirror images (left-right); `"crop"`: the images and
    their centre `crop_fraction` scaled back to the same size (the zoom of ImageNet's
    evaluation crop, the card's `crop_pct`); `"flip+crop"`: all four.
    """
    images = np.asarray(images)
    used = TTA_VIEWS[tta]
    crop = _centre_zoom(images, crop_fraction) if {1, 3} & set(used) else None
    views = {0: images, 1: crop, 2: images[:, :, ::-1]}
    if crop is not None:
        views[3] = crop[:, :, ::-1]
    return [views[i] for i in used]


def _centre_zoom(images: np.ndarray, fraction: float) -> np.ndarray:
    import keras

    if not 0.0 < float(fraction) <= 1.0:
        raise BuildArgumentError(
            f"Expected a crop fraction in (0, 1], e.g. 0.875. Received: {fraction!r}"
        )
    height, width = images.shape[1:3]
    h, w = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - h) // 2, (width - w) // 2
    crop = images[:, top : top + h, left : left + w].astype("float32")
    zoomed = keras.ops.image.resize(crop, (height, width), interpolation="bilinear")
    return np.asarray(keras.ops.convert_to_numpy(zoomed))


def _predict_probs(
    model: Any, images: np.ndarray, tta: str = "none", crop_fraction: float = DEFAULT_CROP_FRACTION
) -> np.ndarray:
    """Class probabilities of a batch, averaged over the `tta` views (`tta_views`).

    Flips pay only where the classes are mirror-symmetric (photos of objects, clothes),
    and hurt where they are not (digits, text); crops where objects fill the centre:
    the training report measures each on the validation images (metrics.json).
    """
    views = tta_views(images, tta, crop_fraction)
    return sum(_forward(model, view) for view in views) / len(views)


def _forward(model: Any, images: np.ndarray) -> np.ndarray:
    out = model.predict_on_batch(images)
    if isinstance(out, (dict, list, tuple)):
        raise BuildArgumentError(
            "Expected a classifier with one output. Received a model with outputs "
            f"{[tuple(t.shape) for t in model.outputs]}."
        )
    return _scores_to_probs(np.asarray(out))


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BuildArgumentError(f"Expected `{name}` to be a positive int. Received: {value!r}")
    return value


# ------------------------------------------------------------------ predict
@dataclass
class ImagePrediction:
    """The top classes of one image: `top` is `[(name, index, probability), ...]`, best first.

    `error` says why an image could not be read (then `top` is empty), when
    `predict_files` was asked to report such files instead of raising.
    """

    path: str
    top: list[tuple[str, int, float]]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "top": [
                {"rank": r, "class": n, "index": i, "probability": p}
                for r, (n, i, p) in enumerate(self.top, start=1)
            ],
        }
        if self.error is not None:
            out["error"] = self.error
        return out


def predict_files(
    model: Any,
    paths: Sequence[str | os.PathLike],
    *,
    class_names: Sequence[str],
    image_size: tuple[int, int],
    top_k: int = 5,
    batch_size: int = 32,
    errors: str = "raise",
    tta: str = "none",
    crop_fraction: float = DEFAULT_CROP_FRACTION,
) -> list[ImagePrediction]:
    """The `top_k` classes of each image file, in the order of `paths`.

    Args:
        model: a classifier taking raw RGB 0-255 (as `build` makes them).
        paths: image files (JPEG, PNG, BMP, GIF; gray and RGBA are converted).
        class_names: `list[str]`, one per output (`load_for_inference` gives them).
        image_size: `(height, width)` the images are resized to.
        top_k: `int`, how many classes per image (at most the number of classes).
        batch_size: images per forward pass.
        errors: `"raise"` (an `ImageFileError` at the first unreadable file) or
            `"report"` (predict the others; the unreadable ones come back with
            `error` set and no classes).
        tta: test-time augmentation: `"none"`, `"flip"` (the mean of the image's and
            its mirror image's probabilities; twice the compute), `"crop"` (the image
            and its centre `crop_fraction`, zoomed) or `"flip+crop"` (4 views).
        crop_fraction: the centre crop of `"crop"` (`load_for_inference` gives the
            card's `crop_pct` where the model has a zoo backbone).

    ```python
    model, names, size = load_for_inference("flowers.keras")
    preds = predict_files(model, ["a.jpg"], class_names=names, image_size=size, top_k=3)
    preds[0].top   # [('roses', 2, 0.91), ('tulips', 4, 0.05), ('daisy', 0, 0.02)]
    ```
    """
    names = _check_names(list(class_names))
    top_k = min(_check_positive("top_k", top_k), len(names))
    _check_positive("batch_size", batch_size)
    if len(names) != _num_outputs(model):
        raise LabelMismatchError(
            f"The model has {_num_outputs(model)} outputs but class_names has {len(names)} "
            f"names. Received: class_names={names[:10]}"
        )
    if errors not in ("raise", "report"):
        raise BuildArgumentError(f"Expected errors 'raise' or 'report'. Received: {errors!r}")
    _check_tta(tta)
    paths = [os.fspath(p) for p in paths]
    results = []
    for chunk in _batches(paths, batch_size):  # decoded a batch at a time: any number of files
        images, rows = [], []
        for p in chunk:
            try:
                images.append(load_image(p, image_size))
            except ImageFileError as exc:
                if errors == "raise":
                    raise
                rows.append(ImagePrediction(p, [], error=str(exc)))
            else:
                rows.append(None)  # filled below, in order
        probs = iter(_predict_probs(model, np.stack(images), tta, crop_fraction) if images else [])
        for p, row in zip(chunk, rows, strict=True):
            if row is None:
                scores = next(probs)
                best = np.argsort(-scores, kind="stable")[:top_k]
                row = ImagePrediction(p, [(names[i], int(i), float(scores[i])) for i in best])
            results.append(row)
    return results


def predictions_table(predictions: Sequence[ImagePrediction]) -> str:
    """A plain-text table of `predict_files` results, one block per image.

    Args:
        predictions: what `predict_files` returned.

    ```python
    print(predictions_table(predict_files(model, ["a.jpg"], class_names=names, image_size=size)))
    ```
    """
    lines = []
    for pred in predictions:
        lines.append(pred.path)
        if pred.error is not None:
            lines.append(f"  not predicted: {pred.error}")
        for rank, (name, index, prob) in enumerate(pred.top, start=1):
            lines.append(f"  {rank:>2}. {name:<32} {100 * prob:6.2f}%  (class {index})")
    return "\n".join(lines)


def predictions_json(predictions: Sequence[ImagePrediction]) -> str:
    """`predict_files` results as JSON.

    A list of `{"path", "top": [{"rank", "class", "index", "probability"}]}`.

    Args:
        predictions: what `predict_files` returned.

    ```python
    rows = json.loads(predictions_json(preds))
    ```
    """
    return json.dumps([p.to_dict() for p in predictions], indent=2)


# ------------------------------------------------------------------ image folders
@dataclass
class ImageFolder:
    """Image files of a folder with one subfolder per class.

    `labels[i]` is the index of `paths[i]`'s class in `class_names` (the model's names
    when `image_folder` was given them, else the sorted subfolder names).
    """

    root: Path
    paths: list[Path]
    labels: np.ndarray
    class_names: list[str]
    unsupported: list[str] = field(default_factory=list)  # TIFF etc.: skipped, counted


def image_folder(root: str | os.PathLike, class_names: Sequence[str] | None = None) -> ImageFolder:
    """List a folder of `<class>/<image>` files (Keras' `image_dataset_from_directory` layout).

    Args:
        root: the folder; each subfolder is a class, its images (any depth) the samples.
        class_names: the model's class names. Every subfolder must be one of them (a
            subset is fine) and labels are indices into them. Without it, the classes
            are the sorted subfolder names (Keras' convention).

    Raises `ImageFileError` for a missing or empty folder and `LabelMismatchError` for a
    subfolder that is not among `class_names`.

    ```python
    folder = image_folder("flowers/val", class_names=["daisy", "roses"])
    folder.paths[0], folder.labels[0]   # (PosixPath('flowers/val/daisy/1.jpg'), 0)
    ```
    """
    base = Path(root)
    if not base.is_dir():
        raise ImageFileError(
            f"No folder at {str(base)!r}. Expected a folder with one subfolder per class "
            "(e.g. val/cat/1.jpg, val/dog/2.jpg)."
        )
    checked = None if class_names is None else _check_names(list(class_names))
    listing = list_image_folder(base, checked)  # the training reader, with its rules
    folders, names = listing.folders, listing.class_names
    if not folders:
        raise ImageFileError(
            f"{str(base)!r} has no subfolders. Expected one subfolder per class "
            "(e.g. val/cat/1.jpg, val/dog/2.jpg)."
        )
    unknown = [f for f in folders if f not in names]
    if unknown:
        hint = ""
        if names == [str(i) for i in range(len(names))]:
            hint = (
                " The model has no class names: embed them with "
                "`zoo_transfer.predict.embed_labels(path, names)` or put a labels.json "
                "beside the .keras file."
            )
        raise LabelMismatchError(
            f"Subfolders {unknown} of {str(base)!r} are not classes of the model. Expected "
            f"subfolders named after the model's labels {names[:20]}"
            f"{' ...' if len(names) > 20 else ''}. Received: {folders}.{hint}"
        )
    paths, labels = [Path(p) for p in listing.paths], listing.labels
    if not paths:
        raise ImageFileError(
            f"No images under {str(base)!r}. Expected files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)} inside its class subfolders {folders}."
        )
    return ImageFolder(
        base, paths, np.asarray(labels, dtype="int64"), names, list(listing.unsupported)
    )


# ------------------------------------------------------------------ evaluate
@dataclass
class EvaluationResult:
    """Accuracy, per-class precision and recall, confusion matrix and per-sample predictions.

    `confusion_matrix[t, p]` counts samples of true class `t` predicted as `p`.
    Precision (recall) of a class never predicted (never present) is 0.0.
    """

    class_names: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    probability: np.ndarray  # of the predicted class
    items: list[str] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return len(self.y_true)

    @property
    def confusion_matrix(self) -> np.ndarray:
        k = len(self.class_names)
        cm = np.zeros((k, k), dtype="int64")
        np.add.at(cm, (self.y_true, self.y_pred), 1)
        return cm

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.y_true == self.y_pred)) if self.num_samples else 0.0

    @property
    def support(self) -> np.ndarray:
        return self.confusion_matrix.sum(axis=1)

    @property
    def precision(self) -> np.ndarray:
        cm = self.confusion_matrix
        predicted = cm.sum(axis=0)
        return np.divide(np.diag(cm), predicted, out=np.zeros(len(cm)), where=predicted > 0)

    @property
    def recall(self) -> np.ndarray:
        cm = self.confusion_matrix
        present = cm.sum(axis=1)
        return np.divide(np.diag(cm), present, out=np.zeros(len(cm)), where=present > 0)

    def samples(self) -> list[dict[str, Any]]:
        """One dict per sample: item, true and predicted class (name and index), probability."""
        names = self.class_names
        return [
            {
                "item": item,
                "true": names[t],
                "true_index": int(t),
                "predicted": names[p],
                "predicted_index": int(p),
                "probability": float(prob),
                "correct": bool(t == p),
            }
            for item, t, p, prob in zip(
                self.items, self.y_true, self.y_pred, self.probability, strict=True
            )
        ]

    def misclassified(self) -> list[dict[str, Any]]:
        """The wrong samples, most confident first."""
        wrong = [s for s in self.samples() if not s["correct"]]
        return sorted(wrong, key=lambda s: -s["probability"])

    def to_dict(self) -> dict[str, Any]:
        """Plain data: accuracy, num_samples, classes, confusion_matrix, misclassified, samples."""
        p, r, s = self.precision, self.recall, self.support
        return {
            "accuracy": self.accuracy,
            "num_samples": self.num_samples,
            "classes": [
                {
                    "name": n,
                    "precision": float(p[i]),
                    "recall": float(r[i]),
                    "support": int(s[i]),
                }
                for i, n in enumerate(self.class_names)
            ],
            "confusion_matrix": self.confusion_matrix.tolist(),
            "misclassified": self.misclassified(),
            "samples": self.samples(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_table(self, max_misclassified: int = 20, max_matrix_classes: int = 20) -> str:
        """Text report: accuracy, per-class table, confusion matrix, worst mistakes.

        Classes without samples or predictions are left out of the per-class table; the
        matrix is printed for at most `max_matrix_classes` classes (JSON has it always).
        """
        cm = self.confusion_matrix
        p, r, s = self.precision, self.recall, self.support
        used = [i for i in range(len(cm)) if s[i] or cm[:, i].sum()]
        width = max([5] + [len(self.class_names[i]) for i in used]) + 2
        correct = int(np.trace(cm))
        out = [f"accuracy {self.accuracy:.4f} ({correct}/{self.num_samples})", ""]
        out.append(f"{'CLASS':<{width}}{'PRECISION':>10}{'RECALL':>8}{'SUPPORT':>9}")
        for i in used:
            out.append(f"{self.class_names[i]:<{width}}{p[i]:>10.3f}{r[i]:>8.3f}{s[i]:>9d}")
        if len(used) <= max_matrix_classes:
            cell = max([4] + [len(str(int(v))) + 1 for v in cm.ravel()])
            out += ["", "confusion matrix (rows: true class, columns: predicted, same order)"]
            for i in used:
                row = "".join(f"{int(cm[i, j]):>{cell}d}" for j in used)
                out.append(f"{self.class_names[i]:<{width}}{row}")
        wrong = self.misclassified()
        if wrong:
            out += ["", f"misclassified: {len(wrong)} of {self.num_samples} (most confident first)"]
            for w in wrong[:max_misclassified]:
                pct = 100 * w["probability"]
                out.append(f"  {w['item']}  {w['true']} -> {w['predicted']} ({pct:.1f}%)")
            if len(wrong) > max_misclassified:
                out.append(f"  ... {len(wrong) - max_misclassified} more (see --format json)")
        return "\n".join(out)


def _labels_to_indices(y: Any, k: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = y.argmax(axis=1)
    y = y.reshape(-1)
    if y.size and (not np.issubdtype(y.dtype, np.number) or y.min() < 0 or y.max() >= k):
        raise LabelMismatchError(
            f"Expected integer labels in [0, {k}) (or one-hot rows), one per class name. "
            f"Received labels from {y.min()} to {y.max()}."
        )
    return y.astype("int64")


def _readable(folder: ImageFolder, size: Any) -> tuple[list[tuple], list[str]]:
    """(path, label, image) of every decodable file, and the paths that are not."""
    readable, skipped = [], []
    for path, label in zip(folder.paths, folder.labels, strict=True):
        try:
            readable.append((path, int(label), load_image(path, size)))
        except ImageFileError:
            skipped.append(str(path))
    return readable, skipped


def evaluate(
    model: Any,
    data: Any,
    class_names: Sequence[str],
    *,
    batch_size: int = 32,
    image_size: tuple[int, int] | None = None,
    tta: str = "none",
    crop_fraction: float = DEFAULT_CROP_FRACTION,
) -> EvaluationResult:
    """Evaluate a classifier: accuracy, precision/recall per class, confusion matrix.

    Args:
        model: a classifier taking raw RGB 0-255 (as `build` makes them).
        data: a folder path or `ImageFolder` (one subfolder per class, names matching
            `class_names`), an `(images, labels)` pair of arrays, or a `tf.data.Dataset`
            of batched `(images, labels)`. Labels are class indices or one-hot rows.
        class_names: `list[str]`, one per model output.
        batch_size: images per forward pass (arrays and folders).
        image_size: `(height, width)` for folder images; defaults to the model's.
        tta: `"none"`, `"flip"`, `"crop"` or `"flip+crop"`: score the mean over those
            views of each image (see `predict_files`). crop_fraction: for `"crop"`.

    ```python
    model, names, size = load_for_inference("flowers.keras")
    result = evaluate(model, "flowers/val", names)
    print(result.accuracy, result.to_table())
    ```
    """
    names = _check_names(list(class_names))
    _check_positive("batch_size", batch_size)
    _check_tta(tta)
    k = len(names)
    if _num_outputs(model) != k:
        raise LabelMismatchError(
            f"The model has {_num_outputs(model)} outputs but class_names has {k} names. "
            f"Received: class_names={names[:10]}"
        )
    if isinstance(data, (str, os.PathLike)):
        data = image_folder(data, names)
    true, probs, items = [], [], []
    if isinstance(data, ImageFolder):
        if data.class_names != names:
            data = image_folder(data.root, names)
        size = image_size or _model_image_size(model)
        readable, skipped = _readable(data, size)
        skipped += data.unsupported
        for start in range(0, len(readable), batch_size):
            chunk = readable[start : start + batch_size]
            images = np.stack([image for _, _, image in chunk])
            probs.append(_predict_probs(model, images, tta, crop_fraction))
            true.append(np.asarray([label for _, label, _ in chunk]))
        items = [str(p) for p, _, _ in readable]
        if skipped:
            import warnings

            from zoo_transfer.errors import DataWarning

            warnings.warn(
                f"Skipped {len(skipped)} unreadable files: {', '.join(skipped[:5])}",
                DataWarning,
                stacklevel=2,
            )
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), data[1]
        true.append(_labels_to_indices(y, k))
        if len(true[0]) != len(x):
            raise BuildArgumentError(f"{len(x)} images but {len(true[0])} labels.")
        for start in range(0, len(x), batch_size):
            probs.append(_predict_probs(model, x[start : start + batch_size], tta, crop_fraction))
    elif hasattr(data, "as_numpy_iterator"):  # tf.data.Dataset of batches
        for batch in data.as_numpy_iterator():
            if not isinstance(batch, tuple) or len(batch) < 2:
                raise BuildArgumentError(
                    "Expected a dataset of batched (images, labels) pairs. Received "
                    f"elements of type {type(batch).__name__}."
                )
            probs.append(_predict_probs(model, batch[0], tta, crop_fraction))
            true.append(_labels_to_indices(batch[1], k))
    else:
        raise BuildArgumentError(
            "Expected `data` as a folder path, an ImageFolder, an (images, labels) pair or "
            f"a tf.data.Dataset of batches. Received: {type(data).__name__}"
        )
    if not probs:
        raise BuildArgumentError("Nothing to evaluate: `data` holds no samples.")
    all_probs = np.concatenate(probs)
    y_true = np.concatenate([_labels_to_indices(t, k) for t in true])
    y_pred = all_probs.argmax(axis=1)
    items = items or [f"#{i}" for i in range(len(y_true))]
    return EvaluationResult(
        class_names=names,
        y_true=y_true,
        y_pred=y_pred.astype("int64"),
        probability=all_probs[np.arange(len(y_pred)), y_pred],
        items=items,
    )
