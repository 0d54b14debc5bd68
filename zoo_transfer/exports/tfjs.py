"""TensorFlow.js layers-format writer (`model.json` + one weights shard), without tensorflowjs.

The `tensorflowjs` converter pins TensorFlow Decision Forests and tf-keras, which do not
install beside this TensorFlow, so zoo-transfer writes the format itself: the Keras
graph flattened (nested backbones inlined, as TF.js wants one layer list), each layer's
config in the Keras 2 JSON form that `tf.loadLayersModel` reads, and the weights named
`layer/variable` in one little-endian float32 shard. `zoo_transfer.recipes` reads the same
format back (`build(..., weights="dir/")`).

Only layers TF.js has an equivalent for are written; `unsupported_layers` names the others
before anything is written.

```python
topology, weights = tfjs_graph(model)
write_tfjs(model, folder, metadata={"class_names": ["cat", "dog"]})
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.errors import ExportError

SHARD = "group1-shard1of1.bin"

# Keras layer class -> config keys TF.js does not take (dropped when they hold the
# default) and checks on the others. Anything else is refused.
_PLAIN = (
    "Dense",
    "Conv2D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "BatchNormalization",
    "Activation",
    "ZeroPadding2D",
    "Cropping2D",
    "Rescaling",
    "Add",
    "Multiply",
    "Concatenate",
    "MaxPooling2D",
    "AveragePooling2D",
    "Dropout",
    "Flatten",
    "Reshape",
    "ReLU",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
)
SUPPORTED = frozenset(("InputLayer", *_PLAIN))
_ACTIVATIONS = {"linear", "relu", "relu6", "sigmoid", "softmax", "tanh", "swish", "elu", "selu"}
_RENAMED_ACTIVATIONS = {"silu": "swish"}  # the same function, TF.js' name
# Keras 3 variable names that TF.js (and Keras 2) call otherwise, by layer class.
_TFJS_VARIABLE = {"DepthwiseConv2D": {"kernel": "depthwise_kernel"}}
_DROP_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
_DROP_KEYS = {
    "build_config",
    "lora_rank",
    "lora_alpha",
    "quantization_config",
    "synchronized",
    "renorm",
    "renorm_clipping",
    "renorm_momentum",
    "keepdims",
    "negative_slope",
    "threshold",
    "groups",
}


def _problem(entry: dict[str, Any]) -> str | None:
    """Why TF.js cannot hold this layer config entry, or None."""
    kind, config = entry["class_name"], entry.get("config", {})
    if kind == "Functional":
        return None  # inlined
    if kind not in SUPPORTED:
        return f"{config.get('name', '?')} ({kind}: no TF.js layer)"
    activation = config.get("activation")
    activation = _RENAMED_ACTIVATIONS.get(activation, activation)
    if isinstance(activation, (dict, list)) or (activation and activation not in _ACTIVATIONS):
        return f"{config['name']} (activation {activation!r} has no TF.js equivalent)"
    if config.get("keepdims"):
        return f"{config['name']} ({kind} with keepdims=True)"
    if kind == "ReLU" and (config.get("negative_slope") or config.get("threshold")):
        return f"{config['name']} (ReLU with negative_slope or threshold)"
    if kind == "Rescaling" and not all(
        isinstance(config.get(k, 0.0), (int, float)) for k in ("scale", "offset")
    ):
        return f"{config['name']} (Rescaling per channel: TF.js takes one scale and offset)"
    if config.get("groups", 1) != 1:
        return f"{config['name']} (grouped convolution)"
    if config.get("data_format", "channels_last") != "channels_last":
        return f"{config['name']} (channels_first)"
    return None


def _entries(model: Any) -> list[dict[str, Any]]:
    config = model.get_config()
    out = []
    for entry in config["layers"]:
        out.append(entry)
        if entry["class_name"] == "Functional":
            out.extend(_entries(model.get_layer(entry["config"]["name"])))
    return out


def unsupported_layers(model: Any) -> list[str]:
    """The layers of `model` (nested models included) that TF.js cannot hold, described."""
    problems = [p for e in _entries(model) if (p := _problem(e))]
    names = [e["config"]["name"] for e in _entries(model) if e["class_name"] != "InputLayer"]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"layer names used twice across nested models: {', '.join(repeated)}")
    return problems


def _tfjs_config(entry: dict[str, Any]) -> dict[str, Any]:
    config = dict(entry["config"])
    if entry["class_name"] == "InputLayer":
        return {
            "batch_input_shape": config.get("batch_shape") or config.get("batch_input_shape"),
            "dtype": "float32",
            "sparse": False,
            "name": config["name"],
        }
    for key in list(config):
        if key in _DROP_KEYS or key.endswith(_DROP_SUFFIXES):
            del config[key]
    if config.get("activation") in _RENAMED_ACTIVATIONS:
        config["activation"] = _RENAMED_ACTIVATIONS[config["activation"]]
    if isinstance(config.get("dtype"), dict):  # a Keras 3 DTypePolicy
        config["dtype"] = config["dtype"].get("config", {}).get("name", "float32")
    if config.get("dtype") not in (None, "float32"):
        config["dtype"] = "float32"  # mixed-precision layers: TF.js computes in float32
    return config


def _refs(arg: Any) -> list[tuple[str, int, int]]:
    """The `keras_history` references in one call argument (a tensor or a list of them)."""
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        name, node, index = arg["config"]["keras_history"]
        return [(name, node, index)]
    if isinstance(arg, (list, tuple)):
        return [r for a in arg for r in _refs(a)]
    return []


def _as_list(refs: Any) -> list[list[Any]]:
    return [refs] if refs and isinstance(refs[0], str) else list(refs)


def _flatten(
    model: Any,
    inputs: dict[str, tuple[str, int, int]] | None,
    layers: list[dict[str, Any]],
    weighted: list[Any],
) -> list[tuple[str, int, int]]:
    """Append `model`'s layers to `layers` (TF.js entries) and return its outputs as refs
    into that flat list. `inputs`: the refs feeding a nested model's inputs (None: top)."""
    config = model.get_config()
    where: dict[tuple[str, int, int], tuple[str, int, int]] = {}

    def resolve(ref: tuple[str, int, int]) -> tuple[str, int, int]:
        return where.get(tuple(ref), (ref[0], 0, ref[2]))

    for (name, node, index), ref in zip(
        map(tuple, _as_list(config["input_layers"])), (inputs or {}).values(), strict=False
    ):
        where[(name, node, index)] = ref
    for entry in config["layers"]:
        name, kind = entry["config"]["name"], entry["class_name"]
        calls = entry.get("inbound_nodes", [])
        if len(calls) > 1:
            raise ExportError(
                f"Layer {name} is called {len(calls)} times; TF.js export takes each layer "
                "once. Rebuild the model without sharing that layer."
            )
        args = [resolve(r) for r in _refs(calls[0]["args"])] if calls else []
        if kind == "InputLayer":
            if inputs is None:
                layers.append(
                    {"class_name": "InputLayer", "config": _tfjs_config(entry), "name": name}
                )
                layers[-1]["inbound_nodes"] = []
            continue
        if kind == "Functional":
            inner = model.get_layer(name)
            outs = _flatten(inner, {str(i): a for i, a in enumerate(args)}, layers, weighted)
            for i, out in enumerate(outs):
                where[(name, 0, i)] = out
            continue
        layers.append(
            {
                "class_name": kind,
                "config": _tfjs_config(entry),
                "name": name,
                "inbound_nodes": [[[a[0], a[1], a[2], {}] for a in args]] if args else [],
            }
        )
        layer = model.get_layer(name)
        if layer.weights:
            weighted.append(layer)
    return [resolve(tuple(r)) for r in _as_list(config["output_layers"])]


def tfjs_graph(model: Any) -> tuple[dict[str, Any], list[Any]]:
    """(`modelTopology` for model.json, the layers holding weights in order).

    Raises `ExportError` naming every layer TF.js cannot hold.
    """
    problems = unsupported_layers(model)
    if problems:
        raise ExportError(
            "This model has layers TensorFlow.js cannot hold: "
            + "; ".join(problems[:10])
            + ". Export to saved_model, onnx or litert instead, or rebuild the model "
            "from layers TF.js has."
        )
    layers: list[dict[str, Any]] = []
    weighted: list[Any] = []
    outputs = _flatten(model, None, layers, weighted)
    inputs = [[e["name"], 0, 0] for e in layers if e["class_name"] == "InputLayer"]
    topology = {
        "class_name": "Model",
        "config": {
            "name": model.name,
            "layers": layers,
            "input_layers": inputs,
            "output_layers": [list(o) for o in outputs],
        },
        "keras_version": "tfjs-layers",
        "backend": "tensor_flow.js",
    }
    return topology, weighted


def write_tfjs(model: Any, folder: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write `model` as a TF.js layers model into `folder` (which must exist): `model.json`
    (topology, weights manifest, `metadata` under `userDefinedMetadata`) and one shard.
    Returns the path of `model.json`."""
    import keras

    folder = Path(folder)
    topology, weighted = tfjs_graph(model)
    specs, blobs = [], []
    for layer in weighted:
        for variable in layer.weights:
            array = np.ascontiguousarray(keras.ops.convert_to_numpy(variable), dtype="<f4")
            name = _TFJS_VARIABLE.get(type(layer).__name__, {}).get(variable.name, variable.name)
            specs.append(
                {"name": f"{layer.name}/{name}", "shape": list(array.shape), "dtype": "float32"}
            )
            blobs.append(array.tobytes())
    (folder / SHARD).write_bytes(b"".join(blobs))
    document = {
        "format": "layers-model",
        "generatedBy": "zoo-transfer",
        "convertedBy": None,
        "modelTopology": topology,
        "weightsManifest": [{"paths": [SHARD], "weights": specs}],
        "userDefinedMetadata": metadata or {},
    }
    path = folder / "model.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path
