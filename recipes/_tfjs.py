"""TensorFlow.js layers-format folders (`model.json` + shards), without tensorflowjs.

Read here: the folder (or its `model.json`), the topology and the weights by layer name.
Teachable Machine exports, built on this format, are rebuilt in `_teachable.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.errors import WeightsCorruptError

from ._weights import NamedWeights, _var_key

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


def is_tfjs_folder(path: Path) -> bool:
    return path.is_dir() and (path / "model.json").is_file()


def tfjs_folder(path: str | Path) -> Path | None:
    """The TensorFlow.js export that `path` names, as its folder: `path` may be the folder
    or its `model.json` file (what a file dialog or tab completion gives)."""
    path = Path(path)
    if path.name == "model.json" and path.is_file():
        path = path.parent
    return path if is_tfjs_folder(path) else None


def read_model_json(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "model.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsCorruptError(f"{folder / 'model.json'} is not readable JSON: {exc}") from None


def read_tfjs_weights(folder: Path) -> NamedWeights:
    """All weights of a TF.js layers model, grouped by layer name, in manifest order."""
    manifest = read_model_json(folder).get("weightsManifest")
    if not isinstance(manifest, list):
        raise WeightsCorruptError(f"{folder / 'model.json'} has no weightsManifest.")
    out: NamedWeights = {}
    for group in manifest:
        blob = b"".join(_read_shard(folder / p) for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            if "quantization" in spec:
                raise WeightsCorruptError(
                    f"{folder}: weight {spec['name']} is quantized; export the model "
                    "without quantization (tensorflowjs_converter default) to load it."
                )
            dtype = np.dtype(_DTYPES.get(spec.get("dtype", "float32"), np.float32))
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            size = count * dtype.itemsize
            if offset + size > len(blob):
                raise WeightsCorruptError(
                    f"{folder}: the shards of group {group['paths']} end before weight "
                    f"{spec['name']}; a shard is missing or truncated."
                )
            array = np.frombuffer(blob, dtype=dtype, count=count, offset=offset)
            offset += size
            layer = spec["name"].rsplit("/", 1)[0].split("/")[-1]
            out.setdefault(layer, []).append(
                (_var_key(spec["name"]), array.reshape(spec["shape"]).copy())
            )
        if offset != len(blob):
            raise WeightsCorruptError(
                f"{folder}: shards {group['paths']} hold {len(blob) - offset} bytes more than "
                "the manifest describes; they do not belong to this model.json."
            )
    return out


def _read_shard(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise WeightsCorruptError(f"TF.js weight shard {path} is missing: {exc}") from None
