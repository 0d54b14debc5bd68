"""Export a trained model for deployment, checked in the format's own runtime.

`export(model, out, format)` writes one folder: the model in the format (`saved_model`:
a SavedModel, `onnx`: `model.onnx`, `litert`: `model.tflite`, `tfjs`: a TensorFlow.js
layers model), `labels.txt` (the class names, one per line, in output order) and
`export.json` (format, class names, input spec, the files written, the check). The
exported model takes what the Keras model takes: raw RGB 0-255 images of the input
spec's side, normalisation inside.

Before the folder appears, the export is run in its runtime (TensorFlow, onnxruntime,
the LiteRT interpreter; TF.js weights are read back) on check images and its outputs
compared with the Keras model's (max difference 1e-4 unless quantized). A model a format
cannot hold, a failed conversion or a failed check leave `out` as it was.

```python
import zoo_transfer
result = zoo_transfer.export("run/final.keras", "deploy/onnx", format="onnx")
result.max_difference  # e.g. 2.4e-07
```
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.errors import ArgumentError, ExportError, MissingExtraError, OutputFolderError

FORMATS = ("saved_model", "onnx", "litert", "tfjs")
QUANTIZATIONS = ("dynamic", "float16")
MANIFEST = "export.json"
LABELS = "labels.txt"
TOLERANCE = 1e-4  # float32 exports: the largest output difference the check accepts
_MODEL_FILES = {"onnx": "model.onnx", "litert": "model.tflite", "tfjs": "model.json"}
# format -> (module, pip package) the conversion and the runtime check need
_NEEDS = {
    "saved_model": [("tensorflow", "tensorflow")],
    "onnx": [
        ("tensorflow", "tensorflow"),
        ("tf2onnx", "tf2onnx"),
        ("onnx", "onnx"),
        ("onnxruntime", "onnxruntime"),
    ],
    "litert": [("tensorflow", "tensorflow"), ("ai_edge_litert", "ai-edge-litert")],
    "tfjs": [],
}


@dataclass
class ExportResult:
    """What `export` wrote: the folder, its files and the runtime check."""

    folder: Path
    format: str
    files: list[str]
    class_names: list[str]
    side: int
    max_difference: float  # largest |exported - Keras| output on the check images
    top1_agreement: float  # share of check images whose top class is the same
    checked: int  # number of check images
    quantize: str | None = None
    size_bytes: int = 0
    notes: list[str] = field(default_factory=list)


def _check_args(format: str, quantize: str | None) -> None:
    if format not in FORMATS:
        raise ArgumentError(
            f"Unknown export format {format!r}. Choose one of: {', '.join(FORMATS)}."
        )
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ArgumentError(
            f"Unknown quantization {quantize!r}. Choose one of: {', '.join(QUANTIZATIONS)}."
        )
    if quantize is not None and format != "litert":
        raise ArgumentError(
            f"--quantize applies to the litert format only (post-training quantization of "
            f"the .tflite file). Received: format={format!r}, quantize={quantize!r}"
        )


def check_runtime(format: str) -> None:
    """Raise `MissingExtraError` naming the extra when a package `format` needs is absent."""
    import importlib.util

    def absent(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except (ImportError, ValueError):  # a broken or blocked install
            return True

    missing = [pkg for module, pkg in _NEEDS[format] if absent(module)]
    if "tensorflow" in missing:
        raise MissingExtraError(
            f"Exporting to {format} needs TensorFlow (its converter and, for this format, "
            "its runtime), which is not installed or not importable here. Install it "
            "(pip install tensorflow) and run with KERAS_BACKEND=tensorflow, or export to "
            "tfjs, which needs no TensorFlow."
        )
    if missing:
        raise MissingExtraError(
            f"Exporting to {format} needs {', '.join(missing)}, which is not installed. "
            "Install the export extra: pip install 'zoo-transfer[export]'"
        )


def _existing_export(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("written_by") == "zoo-transfer" else None


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an `out` that would lose something: an existing folder without `overwrite`,
    and, even with it, a folder zoo-transfer did not write or one holding other files."""
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out} is a file. Choose a folder path for the export.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise OutputFolderError(
            f"{out} already exists. Pass --overwrite (overwrite=True) to replace an "
            "earlier export there, or choose another --out."
        )
    earlier = _existing_export(out)
    if earlier is None:
        raise OutputFolderError(
            f"{out} holds files zoo-transfer did not write (no {MANIFEST} of an export), so "
            "--overwrite will not delete them. Choose another --out."
        )
    written = set(earlier.get("files", [])) | {MANIFEST}
    others = sorted(
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and not any(str(p.relative_to(out)).startswith(w) for w in written)
    )
    if others:
        raise OutputFolderError(
            f"{out} holds files the earlier export did not write ({', '.join(others[:5])}); "
            "--overwrite keeps them and refuses. Move them, or choose another --out."
        )


def _fixed_input(model: Any, side: int) -> Any:
    """`model` with a fixed `side x side` input (exporters want defined shapes)."""
    import keras

    shape = tuple(model.input_shape[1:])
    if len(shape) == 3 and None not in shape:
        return model
    inputs = keras.Input((side, side, 3), name="image")
    return keras.Model(inputs, model(inputs), name=model.name)


def _check_images(side: int, images: Any) -> np.ndarray:
    if images is None:  # deterministic, spread over 0-255 and with structure
        rng = np.random.default_rng(0)
        base = rng.uniform(0, 255, (4, side, side, 3))
        ramp = np.linspace(0, 255, side)[None, :, None, None]
        return np.concatenate([base, np.broadcast_to(ramp, (1, side, side, 3))]).astype("float32")
    images = np.asarray(images, dtype="float32")
    if images.ndim != 4 or images.shape[1:] != (side, side, 3):
        raise ArgumentError(
            f"Expected check images of shape (n, {side}, {side}, 3), raw RGB 0-255. "
            f"Received: {images.shape}"
        )
    return images


def keras_outputs(model: Any, images: Any) -> np.ndarray:
    """The Keras model's outputs on `images` in inference mode (one call, no tracing)."""
    import keras

    return keras.ops.convert_to_numpy(model(np.asarray(images, "float32"), training=False))


def _convert(model: Any, folder: Path, format: str, side: int, quantize: str | None) -> None:
    import keras

    if format == "tfjs":
        return  # written with the metadata
    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            f"Exporting to {format} runs on the TensorFlow backend; this process uses "
            f"{keras.backend.backend()!r}. Run it with KERAS_BACKEND=tensorflow."
        )
    signature = [keras.InputSpec(shape=(None, side, side, 3), dtype="float32")]
    kwargs: dict[str, Any] = {}
    if quantize is not None:
        import tensorflow as tf

        kwargs["optimizations"] = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            kwargs["target_spec"] = {"supported_types": [tf.float16]}
    target = folder if format == "saved_model" else folder / _MODEL_FILES[format]
    fmt = "tf_saved_model" if format == "saved_model" else format
    try:
        model.export(str(target), format=fmt, input_signature=signature, verbose=False, **kwargs)
    except Exception as exc:  # a conversion failure: say which format and what
        raise ExportError(
            f"Converting the model to {format} failed: {type(exc).__name__}: "
            f"{str(exc)[:600]}. Nothing was written to the out folder; try another format."
        ) from exc


def run_exported(folder: str | os.PathLike, images: Any) -> np.ndarray:
    """Outputs of the export in `folder` on `images` (raw RGB 0-255, `(n, side, side, 3)`),
    computed in the format's runtime: TensorFlow for a SavedModel, onnxruntime for ONNX,
    the LiteRT interpreter for `.tflite`. TF.js exports run in JavaScript; see README."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    format, x = manifest["format"], np.asarray(images, dtype="float32")
    if format == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(folder))  # kept: its variables die with it
        return loaded.serve(x).numpy()
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(
            str(folder / _MODEL_FILES["onnx"]), providers=["CPUExecutionProvider"]
        )
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    if format == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(folder / _MODEL_FILES["litert"]))
        entry = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(entry["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(entry["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    raise ArgumentError(
        f"run_exported runs saved_model, onnx and litert exports; {folder} holds {format} "
        "(run TF.js models with @tensorflow/tfjs, see README)."
    )


def _tfjs_roundtrip(model: Any, folder: Path) -> None:
    """Every weight read back by zoo-transfer's TF.js reader equals the model's."""
    import keras

    from zoo_transfer.recipes import read_tfjs_weights

    named = read_tfjs_weights(folder)
    for layer in _weighted(model):
        stored = dict(named.get(layer.name, []))
        for variable in layer.weights:
            key = "kernel" if variable.name == "depthwise_kernel" else variable.name
            value = stored.get(key)
            if value is None or not np.array_equal(
                value, keras.ops.convert_to_numpy(variable).astype("float32")
            ):
                raise ExportError(
                    f"The TF.js weights written for {layer.name}/{variable.name} do not read "
                    "back equal; the export was not kept."
                )


def _weighted(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_weighted(layer))
        elif layer.weights:
            out.append(layer)
    return out


def _source(model: Any) -> tuple[Any, list[str] | None, Any]:
    """(Keras model, class names or None, input spec or None) of a model or a `.keras` path."""
    if isinstance(model, (str, os.PathLike)):
        from zoo_transfer.model_file import load_for_inference

        loaded = load_for_inference(model)
        return loaded.model, loaded.class_names, loaded.input_spec
    return model, None, None


def export(
    model: Any,
    out: str | os.PathLike,
    format: str = "saved_model",
    *,
    class_names: list[str] | None = None,
    input_spec: Any = None,
    quantize: str | None = None,
    overwrite: bool = False,
    check_images: Any = None,
) -> ExportResult:
    """Export `model` (a Keras model or a `.keras` path) to `out` in `format`.

    Args:
        model: a Keras model taking raw RGB 0-255 images, or the path of a `.keras`
            file written by zoo-transfer (class names and input spec come with it).
        out: the folder to create. An existing one is refused unless `overwrite`, and
            even then only an earlier export holding nothing else is replaced.
        format: one of `FORMATS`.
        class_names: output names; default: the file's, else `"0"`, `"1"`, ...
        input_spec: a `zoo_transfer.InputSpec`; default: the file's or the model's card's.
        quantize: `"dynamic"` or `"float16"` post-training quantization (`litert` only).
        check_images: `(n, side, side, 3)` raw images for the runtime check; default:
            five synthetic ones. Pass real images to see quantization's effect.

    Raises `ArgumentError` (format, quantize), `MissingExtraError` (a package the format
    needs), `OutputFolderError` (out), `ExportError` (a layer the format cannot hold, a
    failed conversion, or outputs that differ by more than `TOLERANCE`).
    """
    from zoo_transfer.input_spec import InputSpec
    from zoo_transfer.model_file import check_class_names, num_outputs

    _check_args(format, quantize)
    out = Path(out)
    check_out(out, overwrite)
    check_runtime(format)
    model, file_names, file_spec = _source(model)
    spec = input_spec or file_spec or InputSpec.of_model(model)
    names = check_class_names(class_names or file_names or [])
    names = names or [str(i) for i in range(num_outputs(model))]
    if len(names) != num_outputs(model):
        raise ArgumentError(
            f"{len(names)} class names for a model with {num_outputs(model)} outputs."
        )
    fixed = _fixed_input(model, spec.side)
    if format == "tfjs":
        from zoo_transfer.exports.tfjs import unsupported_layers

        problems = unsupported_layers(fixed)
        if problems:
            raise ExportError(
                "This model has layers TensorFlow.js cannot hold: " + "; ".join(problems[:10])
                + ". Nothing was written. Export to saved_model, onnx or litert instead."
            )  # fmt: skip
    images = _check_images(spec.side, check_images)
    expected = np.asarray(keras_outputs(fixed, images), dtype="float32")

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        _convert(fixed, partial, format, spec.side, quantize)
        manifest = {
            "written_by": "zoo-transfer",
            "format": format,
            "class_names": names,
            "input": {**spec.to_dict(), "shape": [None, spec.side, spec.side, 3],
                      "dtype": "float32", "range": "RGB 0-255, normalisation inside"},
            "quantize": quantize,
        }  # fmt: skip
        if format == "tfjs":
            from zoo_transfer.exports.tfjs import write_tfjs

            write_tfjs(fixed, partial, metadata={"zoo_transfer": manifest})
        (partial / LABELS).write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
        files = sorted(str(p.relative_to(partial)) for p in partial.iterdir())
        manifest["files"] = files
        _write(partial / MANIFEST, manifest)
        if format == "tfjs":
            _tfjs_roundtrip(fixed, partial)
            got, notes = expected, ["TF.js: weights read back equal; run it with @tensorflow/tfjs"]
        else:
            got, notes = np.asarray(run_exported(partial, images), dtype="float32"), []
        difference = float(np.max(np.abs(got - expected)))
        agreement = float(np.mean(got.argmax(-1) == expected.argmax(-1)))
        if quantize is None and not difference <= TOLERANCE:
            raise ExportError(
                f"The {format} export's outputs differ from the Keras model's by up to "
                f"{difference:.3g} (allowed: {TOLERANCE}); it was not kept. Please report it "
                "with the model's card."
            )
        manifest["check"] = {"images": len(images), "max_difference": difference,
                             "top1_agreement": agreement}  # fmt: skip
        _write(partial / MANIFEST, manifest)
        _replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return ExportResult(
        folder=out, format=format, files=files, class_names=names, side=spec.side,
        max_difference=difference, top1_agreement=agreement, checked=len(images),
        quantize=quantize, size_bytes=size, notes=notes,
    )  # fmt: skip


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _replace(partial: Path, out: Path) -> None:
    """Put the finished export in place; an earlier one is removed only after that."""
    if not out.exists():
        os.replace(partial, out)
        return
    aside = out.parent / f".{out.name}.replaced-{os.getpid()}"
    os.replace(out, aside)
    try:
        os.replace(partial, out)
    except BaseException:
        os.replace(aside, out)
        raise
    shutil.rmtree(aside, ignore_errors=True)


__all__ = [
    "FORMATS",
    "QUANTIZATIONS",
    "TOLERANCE",
    "ExportResult",
    "check_out",
    "check_runtime",
    "export",
    "keras_outputs",
    "run_exported",
]
