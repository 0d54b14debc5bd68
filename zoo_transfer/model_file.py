"""The `.keras` artifact: a trained model file with its class names and input spec.

A model is only usable with the names of its outputs and the way its images were
prepared. `embed_labels` writes both into the `.keras` zip (entry
`zoo_transfer/labels.json`, which Keras ignores, so the file still loads in plain
Keras); `read_labels` and `read_input_spec` read them back (names may also come from a
`labels.json` beside the file); `load_for_inference` gives a model ready to predict,
from a `.keras` file or a zoo name with its ImageNet head.

```python
from zoo_transfer.model_file import embed_labels, load_for_inference
model.save("flowers.keras")
embed_labels("flowers.keras", ["daisy", "roses"], input_spec=InputSpec(side=128))
loaded = load_for_inference("flowers.keras")
loaded.class_names, loaded.input_spec.side   # (['daisy', 'roses'], 128)
```
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo_transfer.errors import ArgumentError, LabelMismatchError, ModelFileError
from zoo_transfer.input_spec import DEFAULT_SIDE, InputSpec, fixed_side

LABELS_ENTRY = "zoo_transfer/labels.json"  # inside the .keras zip
LABELS_FILE = "labels.json"  # beside the .keras file
_WEIGHT_SUFFIXES = (".h5", ".hdf5")
_PATH_SUFFIXES = (".keras", ".zip", ".json", ".pb", *_WEIGHT_SUFFIXES)


# ------------------------------------------------------------------ labels in .keras files
def check_class_names(class_names: Any) -> list[str]:
    """`class_names` as a non-empty `list[str]`; `LabelMismatchError` otherwise."""
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
    keras_path: str | os.PathLike,
    class_names: Sequence[str],
    image_size: int | None = None,
    *,
    input_spec: InputSpec | None = None,
) -> None:
    """Store `class_names` (and the input spec) inside the `.keras` file.

    They go into the zip entry `zoo_transfer/labels.json`; the file stays a valid Keras
    archive (`keras.saving.load_model` ignores the entry). What was embedded before is
    replaced. The file is rewritten through a temporary file beside it, so a failure
    leaves the original intact.

    Args:
        keras_path: a `.keras` file written by `model.save`.
        class_names: `list[str]`, the name of each output, in output order.
        image_size: the side the model was trained at (a shorthand for
            `input_spec=InputSpec(side=image_size)` with the defaults).
        input_spec: `InputSpec`, how training prepared the images: `predict` and
            `evaluate` read files the same way.

    ```python
    model.save("flowers.keras")
    embed_labels("flowers.keras", ["daisy", "roses", "tulips"], input_spec=InputSpec(side=160))
    read_labels("flowers.keras")   # ['daisy', 'roses', 'tulips']
    ```
    """
    path = Path(keras_path)
    names = check_class_names(class_names if isinstance(class_names, str) else list(class_names))
    _check_keras_file(path)
    if input_spec is not None and image_size is not None and int(image_size) != input_spec.side:
        raise ArgumentError(
            f"image_size={image_size} disagrees with input_spec.side={input_spec.side}: "
            "pass one of them."
        )
    if input_spec is None and image_size is not None:
        input_spec = InputSpec(side=int(image_size))
    meta: dict[str, Any] = {"labels": names}
    if input_spec is not None:
        meta["image_size"] = input_spec.side  # what 0.1's readers look for
        meta["input"] = input_spec.to_dict()
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


def _embedded(path: Path) -> Any:
    """The JSON `embed_labels` stored in the `.keras` file, or None."""
    try:
        with zipfile.ZipFile(path) as zf:
            if LABELS_ENTRY in zf.namelist():
                return json.loads(zf.read(LABELS_ENTRY).decode("utf-8"))
    except (zipfile.BadZipFile, OSError):
        pass
    return None


def read_labels(keras_path: str | os.PathLike) -> list[str] | None:
    """The class names of a `.keras` file: embedded, else `labels.json` beside it, else None.

    Args:
        keras_path: a `.keras` file.

    ```python
    read_labels("flowers.keras")   # ['daisy', 'roses', 'tulips'], or None
    ```
    """
    path = Path(keras_path)
    data = _embedded(path)
    if data is not None:
        return _labels_from_json(data, f"{path}:{LABELS_ENTRY}")
    beside = path.parent / LABELS_FILE
    if beside.is_file():
        try:
            data = json.loads(beside.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise LabelMismatchError(f"{beside} is not valid JSON: {exc}") from None
        return _labels_from_json(data, str(beside))
    return None


def read_input_spec(keras_path: str | os.PathLike) -> InputSpec | None:
    """The input spec embedded in a `.keras` file, or None (a file from plain Keras).

    A file written by zoo-transfer 0.1 holds only the side (`image_size`): the spec is
    that side with the defaults, which is what 0.1 trained with.
    """
    data = _embedded(Path(keras_path))
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("input"), dict):
        try:
            return InputSpec.from_dict(data["input"])
        except ArgumentError as exc:
            raise ModelFileError(
                f"{keras_path}: its embedded input spec is broken: {exc}"
            ) from None
    side = data.get("image_size")
    if isinstance(side, int) and not isinstance(side, bool) and side > 0:
        return InputSpec(side=side)
    return None


# ------------------------------------------------------------------ loading models
@dataclass(frozen=True)
class LoadedModel:
    """What `load_for_inference` returns; unpacks as `model, class_names, image_size`.

    `input_spec` says how to read images for the model (`predict_files(...,
    input_spec=...)`, `evaluate(..., input_spec=...)`); `image_size` is its
    `(side, side)`, or the model's own non-square input.
    """

    model: Any
    class_names: list[str]
    image_size: tuple[int, int]
    input_spec: InputSpec

    def __iter__(self) -> Iterator[Any]:  # the 0.1 three-tuple
        return iter((self.model, self.class_names, self.image_size))


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


def num_outputs(model: Any) -> int:
    """How many classes a classifier's output names (a 1-unit sigmoid names 2)."""
    units = model.outputs[0].shape[-1]
    return 2 if units == 1 else int(units)


def model_image_size(model: Any, default: Any = (DEFAULT_SIDE, DEFAULT_SIDE)) -> Any:
    """The `(height, width)` a model takes; `default` where it takes any size."""
    shape = tuple(model.inputs[0].shape)
    h, w = (shape[1], shape[2]) if len(shape) == 4 else (None, None)
    return (int(h), int(w)) if h and w else default


def load_for_inference(
    model_ref: str | os.PathLike, *, weights: str | os.PathLike | None = None
) -> LoadedModel:
    """A model ready to predict, its class names, image size and input spec.

    Args:
        model_ref: a trained `.keras` file, or a zoo name (`"mobilenet.a025_224"`) for
            that model with its ImageNet classifier (`build(name, num_classes=None)`)
            and the ImageNet class names.
        weights: for a zoo name only: a weights file (`.h5`, `.weights.h5`) instead
            of `"imagenet"` from the Keras cache (offline machines).

    Returns a `LoadedModel(model, class_names, image_size)` with `.input_spec`. Class
    names of a `.keras` file come from `read_labels`; without any, they are `"0"`,
    `"1"`, ... The input spec is the embedded one; for a file without one (plain
    Keras), the card's of the model's backbone at the model's side.

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
            raise ArgumentError(
                f"`weights` applies to zoo names only; {ref!r} is a model file that holds "
                f"its own weights. Received: weights={os.fspath(weights)!r}"
            )
        return _load_keras_file(path)
    import zoo_transfer
    from zoo_transfer.registry import get_card, imagenet_class_names

    card = get_card(ref)  # UnknownModelError with suggestions
    model = zoo_transfer.build(
        ref, num_classes=None, weights="imagenet" if weights is None else os.fspath(weights)
    )
    names = imagenet_class_names() if card.num_classes == 1000 else None
    names = names or [str(i) for i in range(num_outputs(model))]
    return _loaded(model, names, InputSpec.from_card(card, fixed_side(model)))


def _loaded(model: Any, names: list[str], spec: InputSpec) -> LoadedModel:
    return LoadedModel(model, names, model_image_size(model, default=spec.image_size), spec)


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
    n = num_outputs(model)
    names = read_labels(path)
    if names is None:
        names = [str(i) for i in range(n)]
    elif len(names) != n:
        raise LabelMismatchError(
            f"{path} has {n} outputs but its labels name {len(names)} classes: "
            f"{names[:10]}. Re-embed the right names with "
            "`zoo_transfer.model_file.embed_labels(path, names)`."
        )
    spec = read_input_spec(path) or InputSpec.of_model(model)
    return _loaded(model, names, spec)
