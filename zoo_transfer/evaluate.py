"""Evaluation: accuracy, per-class precision and recall, and the confusion matrix.

`evaluate` scores a classifier on a folder of `<class>/<image>` files (listed by the
training reader's rules, `zoo_transfer.folders`, and read as training read them), on
arrays, or on a `tf.data.Dataset`; `EvaluationResult` turns the outcome into a table or
JSON.

```python
from zoo_transfer.evaluate import evaluate
from zoo_transfer.model_file import load_for_inference
loaded = load_for_inference("flowers.keras")
result = evaluate(loaded.model, "flowers/val", loaded.class_names, input_spec=loaded.input_spec)
print(result.accuracy, result.to_table())
```
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.data import load_image
from zoo_transfer.errors import ArgumentError, ImageFileError, LabelMismatchError
from zoo_transfer.folders import IMAGE_EXTENSIONS, list_image_folder
from zoo_transfer.input_spec import DEFAULT_CROP_FRACTION, InputSpec
from zoo_transfer.model_file import check_class_names, model_image_size, num_outputs
from zoo_transfer.predict import check_positive, check_tta, predict_probs


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
    checked = None if class_names is None else check_class_names(list(class_names))
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
                "`zoo_transfer.model_file.embed_labels(path, names)` or put a labels.json "
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


def _is_py_dataset(data: Any) -> bool:
    """A `keras.utils.PyDataset` (e.g. `Splits.val` off TensorFlow), without importing Keras."""
    return any(c.__name__ == "PyDataset" for c in type(data).__mro__)


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


def _readable(
    folder: ImageFolder, size: Any, spec: InputSpec | None
) -> tuple[list[tuple], list[str]]:
    """(path, label, image) of every decodable file, and the paths that are not."""
    readable, skipped = [], []
    for path, label in zip(folder.paths, folder.labels, strict=True):
        try:
            readable.append((path, int(label), load_image(path, size, spec)))
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
    crop_fraction: float | None = None,
    input_spec: InputSpec | None = None,
) -> EvaluationResult:
    """Evaluate a classifier: accuracy, precision/recall per class, confusion matrix.

    Args:
        model: a classifier taking raw RGB 0-255 (as `build` makes them).
        data: a folder path or `ImageFolder` (one subfolder per class, names matching
            `class_names`), an `(images, labels)` pair of arrays, or a `tf.data.Dataset`
            of batched `(images, labels)`. Labels are class indices or one-hot rows.
        class_names: `list[str]`, one per model output.
        batch_size: images per forward pass (arrays and folders).
        image_size: `(height, width)` for folder images; defaults to the input
            spec's, else the model's.
        tta: `"none"`, `"flip"`, `"crop"` or `"flip+crop"`: score the mean over those
            views of each image (see `predict_files`).
        crop_fraction: for `"crop"` (default: the input spec's, else 0.875).
        input_spec: `InputSpec`, how training read its images
            (`load_for_inference(...).input_spec`): folder images are read the same way.

    ```python
    loaded = load_for_inference("flowers.keras")
    result = evaluate(loaded.model, "flowers/val", loaded.class_names, input_spec=loaded.input_spec)
    print(result.accuracy, result.to_table())
    ```
    """
    names = check_class_names(list(class_names))
    check_positive("batch_size", batch_size)
    check_tta(tta)
    if crop_fraction is None:
        crop_fraction = DEFAULT_CROP_FRACTION if input_spec is None else input_spec.crop_fraction
    k = len(names)
    if num_outputs(model) != k:
        raise LabelMismatchError(
            f"The model has {num_outputs(model)} outputs but class_names has {k} names. "
            f"Received: class_names={names[:10]}"
        )
    if isinstance(data, (str, os.PathLike)):
        data = image_folder(data, names)
    true, probs, items = [], [], []
    if isinstance(data, ImageFolder):
        if data.class_names != names:
            data = image_folder(data.root, names)
        size = image_size or (input_spec.image_size if input_spec else model_image_size(model))
        readable, skipped = _readable(data, size, input_spec)
        skipped += data.unsupported
        for start in range(0, len(readable), batch_size):
            chunk = readable[start : start + batch_size]
            images = np.stack([image for _, _, image in chunk])
            probs.append(predict_probs(model, images, tta, crop_fraction))
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
            raise ArgumentError(f"{len(x)} images but {len(true[0])} labels.")
        for start in range(0, len(x), batch_size):
            probs.append(predict_probs(model, x[start : start + batch_size], tta, crop_fraction))
    elif hasattr(data, "as_numpy_iterator") or _is_py_dataset(data):  # batches
        batches = (
            (data[i] for i in range(len(data)))
            if _is_py_dataset(data)
            else data.as_numpy_iterator()
        )
        for batch in batches:
            if not isinstance(batch, tuple) or len(batch) < 2:
                raise ArgumentError(
                    "Expected a dataset of batched (images, labels) pairs. Received "
                    f"elements of type {type(batch).__name__}."
                )
            probs.append(predict_probs(model, batch[0], tta, crop_fraction))
            true.append(_labels_to_indices(batch[1], k))
    else:
        raise ArgumentError(
            "Expected `data` as a folder path, an ImageFolder, an (images, labels) pair, "
            "a tf.data.Dataset or a keras.utils.PyDataset of batches. Received: "
            f"{type(data).__name__}"
        )
    if not probs:
        raise ArgumentError("Nothing to evaluate: `data` holds no samples.")
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
