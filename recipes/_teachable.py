"""Teachable Machine image exports (`model.json`, `weights.bin`, `metadata.json`) as Keras
models: a MobileNetV2 trunk with Keras layer names, then the user's small dense head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo_transfer.errors import WeightsMismatchError
from zoo_transfer.registry import get_card

from ._build import assemble, pool_layer
from ._tfjs import is_tfjs_folder, read_model_json, read_tfjs_weights, tfjs_folder
from ._weights import assign_by_name


@dataclass
class TeachableMachineModel:
    """A Teachable Machine export as a Keras model that takes raw RGB 0-255 images.

    `model` can be fine-tuned further with `fit`; `labels[i]` names output `i`.
    """

    model: Any
    labels: list[str]
    image_size: int
    card: str


def _head_layers(config: dict[str, Any]) -> list[Any]:
    """Keras layers for the user's head Sequential of a Teachable Machine export."""
    import keras

    layers: list[Any] = []
    for spec in config["config"]["layers"]:
        cls, cfg = spec["class_name"], spec["config"]
        name = "head_" + cfg["name"]
        if cls == "Dense":
            layers.append(
                keras.layers.Dense(
                    cfg["units"],
                    activation=cfg.get("activation"),
                    use_bias=cfg.get("use_bias", True),
                    name=name,
                )
            )
        elif cls == "Dropout":
            layers.append(keras.layers.Dropout(cfg["rate"], name=name))
        elif cls == "Activation":
            layers.append(keras.layers.Activation(cfg["activation"], name=name))
        elif cls == "Flatten":
            layers.append(keras.layers.Flatten(name=name))
        else:
            raise WeightsMismatchError(
                f"Teachable Machine head layer {cfg['name']!r} has class {cls}, which "
                "zoo-transfer does not rebuild (Dense, Dropout, Activation, Flatten)."
            )
    return layers


def load_teachable_machine(path: str | Path, *, name: str | None = None) -> TeachableMachineModel:
    """Rebuild a Teachable Machine image export as a fine-tunable Keras model.

    The trunk is matched to the registry's MobileNetV2 cards (width and size read off
    the weights), its normalisation runs inside the model, and the head is rebuilt
    from `model.json`. Labels come from `metadata.json`.

    ```python
    tm = zoo_transfer.load_teachable_machine("tm-my-image-model/")  # or .../model.json
    probs = tm.model.predict(images_0_255)     # tm.labels[i] names column i
    ```
    """

    folder = tfjs_folder(path) or Path(path)
    meta_path = folder / "metadata.json"
    if not is_tfjs_folder(folder) or not meta_path.is_file():
        raise WeightsMismatchError(
            f"{folder} is not a Teachable Machine export: it needs model.json, the weight "
            "shards and metadata.json (download the model as 'Tensorflow.js' > 'Upload' "
            "or 'Download' in Teachable Machine)."
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    labels = meta.get("labels", []) if isinstance(meta, dict) else None
    if not isinstance(labels, list) or not all(isinstance(x, (str, int)) for x in labels):
        raise WeightsMismatchError(
            f'{meta_path}: expected "labels" to be a list of class names, as Teachable '
            f"Machine writes it. Received: {str(labels)[:200]}. Fix metadata.json or export "
            "the model again."
        )
    labels = [str(x) for x in labels]
    size = int(meta.get("imageSize", 224))
    topology = read_model_json(folder)["modelTopology"]
    outer = topology.get("model_config", topology)["config"]["layers"]
    if len(outer) != 2:
        raise WeightsMismatchError(f"{folder}: expected a trunk and a head Sequential.")
    weights = read_tfjs_weights(folder)
    head_specs = outer[1]["config"]["layers"]
    for spec in head_specs:  # the head is rebuilt with `head_` names
        old = spec["config"]["name"]
        if old in weights:
            weights["head_" + old] = weights.pop(old)
    errors = []
    for tag in ("a035", "a050", "a075", "a100", "a130", "a140"):
        card_name = f"mobilenet_v2.{tag}_{size if size in (96, 128, 160, 192, 224) else 224}"
        try:
            model = assemble(
                get_card(card_name),
                weights=weights,
                input_shape=(size, size, 3),
                head_layers=[pool_layer("avg"), *_head_layers(outer[1])],
                trainable_from=None,
                name=name or "teachable_machine",
            )
            head = [
                layer for layer in model.layers if layer.name.startswith("head_") and layer.weights
            ]
            assign_by_name(head, weights, source=f"{folder} (head)")
            break
        except WeightsMismatchError as exc:
            errors.append(f"{tag}: {exc}")
    else:
        raise WeightsMismatchError(
            f"{folder}: no MobileNetV2 width fits the trunk. " + " / ".join(errors[:2])
        )
    return TeachableMachineModel(model=model, labels=labels, image_size=size, card=card_name)
