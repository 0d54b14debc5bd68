"""Prediction: the top classes of image files, with optional test-time augmentation.

Models here take raw RGB 0-255 pixels, as `zoo_transfer.build` models do: each file is
read as training read it (`zoo_transfer.data.load_image`, through the input spec the
model file carries) and never normalised here (the model does that itself).

```python
from zoo_transfer.model_file import load_for_inference
from zoo_transfer.predict import predict_files
model, names, size = load_for_inference("flowers.keras")
for p in predict_files(model, ["rose.jpg"], class_names=names, image_size=size):
    print(p.path, p.top[0])                      # ('roses', 2, 0.93)
```
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo_transfer.data import load_image
from zoo_transfer.errors import ArgumentError, ImageFileError, LabelMismatchError
from zoo_transfer.input_spec import DEFAULT_CROP_FRACTION, InputSpec
from zoo_transfer.model_file import check_class_names, num_outputs


# ------------------------------------------------------------------ probabilities
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


def check_tta(tta: str) -> str:
    """`tta` if it is one of `TTA_CHOICES`; `ArgumentError` otherwise."""
    if tta not in TTA_CHOICES:
        raise ArgumentError(
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
        raise ArgumentError(
            f"Expected a crop fraction in (0, 1], e.g. 0.875. Received: {fraction!r}"
        )
    height, width = images.shape[1:3]
    h, w = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - h) // 2, (width - w) // 2
    crop = images[:, top : top + h, left : left + w].astype("float32")
    zoomed = keras.ops.image.resize(crop, (height, width), interpolation="bilinear")
    return np.asarray(keras.ops.convert_to_numpy(zoomed))


def predict_probs(
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
        raise ArgumentError(
            "Expected a classifier with one output. Received a model with outputs "
            f"{[tuple(t.shape) for t in model.outputs]}."
        )
    return _scores_to_probs(np.asarray(out))


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_positive(name: str, value: Any) -> int:
    """`value` if it is a positive int; `ArgumentError` naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArgumentError(f"Expected `{name}` to be a positive int. Received: {value!r}")
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
    image_size: tuple[int, int] | None = None,
    top_k: int = 5,
    batch_size: int = 32,
    errors: str = "raise",
    tta: str = "none",
    crop_fraction: float | None = None,
    input_spec: InputSpec | None = None,
) -> list[ImagePrediction]:
    """The `top_k` classes of each image file, in the order of `paths`.

    Args:
        model: a classifier taking raw RGB 0-255 (as `build` makes them).
        paths: image files (JPEG, PNG, BMP, GIF; gray and RGBA are converted).
        class_names: `list[str]`, one per output (`load_for_inference` gives them).
        image_size: `(height, width)` the images are resized to (default: the
            `input_spec`'s).
        top_k: `int`, how many classes per image (at most the number of classes).
        batch_size: images per forward pass.
        errors: `"raise"` (an `ImageFileError` at the first unreadable file) or
            `"report"` (predict the others; the unreadable ones come back with
            `error` set and no classes).
        tta: test-time augmentation: `"none"`, `"flip"` (the mean of the image's and
            its mirror image's probabilities; twice the compute), `"crop"` (the image
            and its centre `crop_fraction`, zoomed) or `"flip+crop"` (4 views).
        crop_fraction: the centre crop of `"crop"` (default: the `input_spec`'s, the
            card's `crop_pct`, else 0.875).
        input_spec: `InputSpec`, how training read its images
            (`load_for_inference(...).input_spec`): files are read the same way.

    ```python
    loaded = load_for_inference("flowers.keras")
    preds = predict_files(
        loaded.model, ["a.jpg"], class_names=loaded.class_names,
        input_spec=loaded.input_spec, top_k=3,
    )
    preds[0].top   # [('roses', 2, 0.91), ('tulips', 4, 0.05), ('daisy', 0, 0.02)]
    ```
    """
    names = check_class_names(list(class_names))
    top_k = min(check_positive("top_k", top_k), len(names))
    check_positive("batch_size", batch_size)
    if len(names) != num_outputs(model):
        raise LabelMismatchError(
            f"The model has {num_outputs(model)} outputs but class_names has {len(names)} "
            f"names. Received: class_names={names[:10]}"
        )
    if errors not in ("raise", "report"):
        raise ArgumentError(f"Expected errors 'raise' or 'report'. Received: {errors!r}")
    check_tta(tta)
    image_size, crop_fraction = _resolve(image_size, crop_fraction, input_spec)
    paths = [os.fspath(p) for p in paths]
    results = []
    for chunk in _batches(paths, batch_size):  # decoded a batch at a time: any number of files
        images, rows = [], []
        for p in chunk:
            try:
                images.append(load_image(p, image_size, input_spec))
            except ImageFileError as exc:
                if errors == "raise":
                    raise
                rows.append(ImagePrediction(p, [], error=str(exc)))
            else:
                rows.append(None)  # filled below, in order
        probs = iter(predict_probs(model, np.stack(images), tta, crop_fraction) if images else [])
        for p, row in zip(chunk, rows, strict=True):
            if row is None:
                scores = next(probs)
                best = np.argsort(-scores, kind="stable")[:top_k]
                row = ImagePrediction(p, [(names[i], int(i), float(scores[i])) for i in best])
            results.append(row)
    return results


def _resolve(
    image_size: Any, crop_fraction: float | None, input_spec: InputSpec | None
) -> tuple[tuple[int, int], float]:
    """The image size and crop fraction to use: as given, else the input spec's."""
    if image_size is None:
        if input_spec is None:
            raise ArgumentError(
                "Pass `input_spec` (`load_for_inference(...).input_spec`) or `image_size`."
            )
        image_size = input_spec.image_size
    if crop_fraction is None:
        crop_fraction = DEFAULT_CROP_FRACTION if input_spec is None else input_spec.crop_fraction
    return (int(image_size[0]), int(image_size[1])), float(crop_fraction)


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
