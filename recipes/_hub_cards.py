"""A card from a keras-hub backbone: stages, shapes, normalisation and counts, measured.

`hub_card_dict` reads a built backbone (random weights will do: only the structure is
read) and its image converter; `scripts/make_hub_cards.py` writes the registry's hub
cards with it, the tests check every hub card against it, and `card_from_preset` makes
a card for any local preset folder (a user's own fine-tuned preset, say).

Stages: a backbone with a feature pyramid (ResNet `P2`..`P5`) gives `stem` and
`stageK` at stride 2**(K+1); a transformer gives `stem` (the patch embedding) and its
blocks `block1`..`blockN` where keras-hub exposes each block's tokens (DINOv2), else the
last block only (keras-hub's ViT and DeiT encoders run every block as one layer). The
last stage is the backbone's output (after its final LayerNorm), or, for a transformer
whose pretrained pooling is a layer of its own (SigLIP's attention-pooling head), the
tokens that layer reads: the card's feature layer is then that layer's pooled output.
Token counts are traced through the layers' computation, not read from what they
declare (keras-hub's SigLIP embedding declares a class token that it does not make).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from zoo_transfer.errors import BuildArgumentError
from zoo_transfer.registry import Card, card_from_dict

from ._encoders import encoder_blocks
from ._hub import (
    INTERPOLATED_TOKENS,
    RESIZABLE_TOKENS,
    TOKEN_POOL,
    TOWER_OF,
    is_preset_folder,
    keras_hub_module,
    read_preset_config,
    shape_argument,
)


def auto_name(class_name: str) -> str:
    """Keras' automatic name for an instance of a class: `DeiTBackbone` -> `dei_t_backbone`
    (what a preset's config.json records when keras-hub saved it unnamed)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _auto_named(op: Any) -> bool:
    """Whether Keras named `op` itself (`activation_22`): such names change between
    processes, so a card never names them."""
    return re.fullmatch(rf"{auto_name(type(op).__name__)}(_\d+)?", op.name) is not None


def _tap_ref(model: Any, tensor: Any) -> str:
    """The card's layer reference for a tensor of `model`: `name`, `name:K` (output K of
    a multi-output layer), or `name+N` (N single-consumer hops after a named layer, for
    the output of an auto-named one)."""
    import keras

    op, node_index, _ = tensor._keras_history
    outputs = keras.tree.flatten(op._inbound_nodes[node_index].outputs)
    index = next(i for i, t in enumerate(outputs) if t is tensor)
    if len(outputs) > 1:
        return f"{op.name}:{index}"
    hops = 0
    while _auto_named(op):
        inputs = op._inbound_nodes[node_index].input_tensors
        if len(inputs) != 1:
            break
        op, node_index, _ = inputs[0]._keras_history
        hops += 1
    return op.name if hops == 0 else f"{op.name}+{hops}"


def _pyramid(backbone: Any) -> dict[str, Any]:
    return dict(getattr(backbone, "pyramid_outputs", None) or {})


def _embedding_layer(backbone: Any) -> Any:
    """The first layer after the image input (a transformer's patch embedding)."""
    import keras

    return next(x for x in backbone.layers if not isinstance(x, keras.layers.InputLayer))


def pooled_output(backbone: Any) -> Any | None:
    """The backbone's output when a layer of its own pools the tokens into one vector
    (`(batch, D)`: SigLIP's attention-pooling head), else None."""
    import keras

    output = keras.tree.flatten(backbone.output)[0]
    return output if len(output.shape) == 2 else None


def _pooled_tokens(pooled: Any) -> Any | None:
    """The token map `(batch, T, D)` that the layer making `pooled` reads (through
    single-input layers), or None."""
    tensor = pooled
    while len(tensor.shape) != 3:
        op, node_index, _ = tensor._keras_history
        inputs = op._inbound_nodes[node_index].input_tensors
        if len(inputs) != 1:
            return None
        tensor = inputs[0]
    return tensor


def stage_taps(backbone: Any) -> list[tuple[str, Any]]:
    """`(stage name, tensor)` for each stage of a keras-hub backbone, in order.

    `backbone` must be built at a fixed input size (the strides are read from shapes).
    A block that runs inside an encoder layer with the others (ViT, DeiT) has no
    tensor: its entry is `(name, "encoder/block")`, the nested reference. A backbone
    whose output is pooled by a layer of its own (`pooled_output`) ends its stages at
    the tokens that layer reads.
    """
    import keras

    output = keras.tree.flatten(backbone.output)[0]
    tokens = _pooled_tokens(output) if len(output.shape) == 2 else None
    if tokens is not None:  # the stages end where the model's own pooling layer reads
        output = tokens
    pyramid = _pyramid(backbone)
    if pyramid and all(re.fullmatch(r"P\d+", k) for k in pyramid):
        taps = []
        for key in sorted(pyramid, key=lambda k: int(k[1:])):
            level = int(key[1:])
            taps.append(("stem" if level == 1 else f"stage{level - 1}", pyramid[key]))
        return taps
    if len(output.shape) == 4:  # a CNN without a pyramid (MobileNetV3)
        return _taps_by_stride(backbone)
    if len(output.shape) != 3:
        raise BuildArgumentError(
            f"{type(backbone).__name__} has neither a feature map nor token outputs, so "
            "zoo-transfer cannot find its stages."
        )
    blocks = int(backbone.get_config().get("num_layers", 0))
    embedding = _embedding_layer(backbone)
    taps = [("stem", embedding.output)]
    if pyramid:  # DINOv2: stem, stage1..stageN = the embedding and each block's tokens
        for key in sorted((k for k in pyramid if k != "stem"), key=lambda k: int(k[5:])):
            taps.append((f"block{int(key[5:])}", pyramid[key]))
    else:  # one layer per block (CLIP, SigLIP), or one encoder layer for all (ViT, DeiT)
        per_block = [
            layer
            for layer in backbone.layers
            if layer is not embedding
            and not isinstance(layer, (keras.layers.InputLayer, keras.layers.LayerNormalization))
            and len(getattr(layer.output, "shape", ())) == 3
        ]
        if len(per_block) == blocks:
            taps += [(f"block{i}", layer.output) for i, layer in enumerate(per_block, start=1)]
        for layer in backbone.layers if len(per_block) != blocks else ():
            inner = encoder_blocks(layer) or []
            if len(inner) == blocks:  # blocks inside one encoder layer: nested references
                taps += [(f"block{i}", f"{layer.name}/{b.name}") for i, b in enumerate(inner, 1)]
    taps = [t for t in taps if t[0] != f"block{blocks}"]
    taps.append((f"block{blocks}", output))  # the last block, after the final LayerNorm
    return taps


def traced_shapes(model: Any, tensors: list[Any], input_shape: tuple | None = None) -> list[tuple]:
    """The shapes (batch left out) that `tensors` of `model` take for one image of
    `input_shape` (default: the model's), traced through the layers' own computation.

    A Keras tensor's `.shape` is what each layer declares (`compute_output_shape`), which
    can be wrong: keras-hub 0.32's SigLIP embedding declares CLIP's class token (197
    tokens at 224 px) but makes 196. No weight is read; the model's variables may be
    uninitialised, and stay so (Keras' tracing would otherwise initialise them all).
    """
    import keras
    from keras.src.backend import compute_output_spec  # no public name in Keras 3

    image = keras.tree.flatten(model.input)[0]
    probe = keras.Model(image, list(tensors))
    with keras.StatelessScope(initialize_variables=False):
        x = keras.KerasTensor((1, *(input_shape or image.shape[1:])), image.dtype)
        specs = compute_output_spec(probe, x)
    return [tuple(int(d) for d in spec.shape[1:]) for spec in keras.tree.flatten(specs)]


def _taps_by_stride(backbone: Any) -> list[tuple[str, Any]]:
    """The last layer output at each stride of a CNN: `stem` at 2, `stageK` at 2**(K+1)."""
    import keras

    height = int(keras.tree.flatten(backbone.input)[0].shape[1])
    last: dict[int, Any] = {}
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        out = layer.output
        if not hasattr(out, "shape") or len(out.shape) != 4:
            continue
        stride = height // int(out.shape[1])
        if stride > 1 and not stride & (stride - 1):
            last[stride] = out
    names = {2: "stem", **{2 ** (k + 1): f"stage{k}" for k in range(1, 9)}}
    return [(names[s], last[s]) for s in sorted(last)]


def converter_preprocessing(converter: dict[str, Any]) -> dict[str, Any]:
    """The card's `preprocessing` for an image converter's `scale`, `offset` and
    `interpolation` (`y = x * scale + offset` on RGB 0-255)."""

    def per_channel(value: Any, default: float) -> list[float]:
        if value is None:
            return [default] * 3
        if isinstance(value, (int, float)):
            return [float(value)] * 3
        return [float(v) for v in value]

    scale = per_channel(converter.get("scale"), 1.0)
    offset = per_channel(converter.get("offset"), 0.0)
    return {
        "mode": "converter",
        "channel_order": "RGB",
        "scale": 1.0,
        "mean": [round(-o / s, 6) for o, s in zip(offset, scale, strict=True)],
        "std": [round(1.0 / s, 6) for s in scale],
        "interpolation": converter.get("interpolation") or "bilinear",
        "crop_pct": 1.0,
    }


def hub_card_dict(
    backbone: Any,
    converter: dict[str, Any],
    *,
    arch: str,
    tag: str,
    preset: str,
    license: str,
    family: str | None = None,
    aliases: tuple[str, ...] = (),
    params: int | None = None,
) -> dict[str, Any]:
    """The card (a dict in the card schema) of a built keras-hub `backbone`.

    `converter` is the preset's image converter config (`image_size`, `scale`,
    `offset`, `interpolation`). `params` overrides the count read from `backbone`
    (the generator passes keras-hub's own figure after checking they agree). The
    feature layer is the last stage's, or, where the backbone pools its tokens with a
    layer of its own (`pooled_output`), that layer: `build`'s default head then reads
    the pretrained model's own image embedding.
    """
    cls = type(backbone)
    # `name` stays: some backbones (DINOv2) prefix their layer names with it, and a preset's
    # config.json carries it, so the card builds and loads under that name.
    config = {k: v for k, v in backbone.get_config().items() if k not in ("trainable", "dtype")}
    size = converter.get("image_size") or config.get(shape_argument(cls), (None, None))[:2]
    height, width = int(size[0]), int(size[1])
    measured = backbone
    if None in tuple(keras_tensor_shape(backbone))[:2]:  # measure the shapes at the card's size
        measured = cls(**{**config, shape_argument(cls): (height, width, 3)})
    stages = []
    tokens = None
    taps = stage_taps(measured)
    # token counts are traced (see `traced_shapes`); feature maps are as their layers declare
    blocks = [t for _, t in taps if not isinstance(t, str) and len(t.shape) == 3]
    shapes = traced_shapes(measured, blocks) if blocks else []
    traced = dict(zip(map(id, blocks), shapes, strict=True))
    for name, tensor in taps:
        nested = isinstance(tensor, str)  # a block inside the encoder: the output's shape
        tap = taps[-1][1] if nested else tensor
        shape = traced.get(id(tap), tuple(tap.shape[1:]))
        if len(shape) == 3:  # a feature map (H, W, C)
            stride = 1 << ((height // int(shape[0])).bit_length() - 1)  # valid padding rounds down
            grid = (int(shape[0]), int(shape[1]), int(shape[2]))
        else:  # tokens (T, D): the patch grid at the card's size
            patch = config["patch_size"]
            ph, pw = (patch, patch) if isinstance(patch, int) else (int(patch[0]), int(patch[1]))
            grid = (height // ph, width // pw, int(shape[1]))
            stride = ph
            prefix = int(shape[0]) - grid[0] * grid[1]
            tokens = {"prefix": prefix, "pool": TOKEN_POOL.get(cls.__name__, "cls")}
        ref = tensor if nested else _tap_ref(measured, tensor)
        stages.append({"name": name, "layer": ref, "stride": stride, "shape": list(grid)})
    if tokens is not None:  # one patch, where `build` interpolates the position rows
        fixed = cls.__name__ not in RESIZABLE_TOKENS | INTERPOLATED_TOKENS
        smallest = [height, width, 3] if fixed else [stages[-1]["stride"]] * 2 + [3]
    else:
        smallest = [32, 32, 3]
    count = int(params if params is not None else backbone.count_params())
    # the model's own pooling layer, when it has one, gives the default features
    pooled = pooled_output(measured) if tokens is not None else None
    card = {
        "arch": arch,
        "tag": tag,
        "family": family or _family(cls.__name__),
        "constructor": f"keras_hub.models:{cls.__name__}",
        "preset": preset,
        "kwargs": _jsonable(config),
        "aliases": list(aliases),
        "input_size": [height, width, 3],
        "min_input_size": smallest,
        "preprocessing": converter_preprocessing(converter),
        "stages": stages,
        "feature_layer": stages[-1]["layer"] if pooled is None else _tap_ref(measured, pooled),
        "head_layers": [],
        "num_classes": 0,
        "params": count,
        "params_no_top": count,
        "license": license,
    }
    if tokens is not None:
        card["tokens"] = tokens
    return card


def keras_tensor_shape(model: Any) -> tuple:
    """The (H, W, C) of a model's image input."""
    import keras

    return tuple(keras.tree.flatten(model.input)[0].shape[1:])


def _family(class_name: str) -> str:
    return "hub_" + re.sub(r"(backbone|visionencoder)$", "", class_name.lower())


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def card_from_preset(
    folder: str | Path, name: str | None = None, *, license: str = "see the preset"
) -> Card:
    """A card for a local keras-hub preset folder, measured from the backbone it holds.

    Register it to build from it: `zoo_transfer.register_model(card)`, then
    `zoo_transfer.build(card.name, num_classes=5, weights=folder)`.

    ```python
    card = zoo_transfer.card_from_preset("presets/my_dinov2", name="my_dinov2.v1")
    ```
    """
    import json

    keras_hub = keras_hub_module()
    path = Path(folder).resolve()
    if not is_preset_folder(path):
        raise BuildArgumentError(
            f"{folder} is not a keras-hub preset folder: it has no config.json. Save one "
            "with `backbone.save_to_preset(folder)`, or fetch one with `zoo-transfer fetch`."
        )
    class_name, config = read_preset_config(path)
    if class_name in TOWER_OF:  # CLIP, SigLIP: the card is the image tower of the preset
        nested = config[TOWER_OF[class_name]]
        class_name, config = nested["class_name"], dict(nested["config"])
    cls = getattr(keras_hub.models, class_name, None)
    if cls is None:
        raise BuildArgumentError(f"{path} holds a {class_name}, which keras-hub does not have.")
    backbone = cls(**config)
    converter_file = path / "image_converter.json"
    if not converter_file.is_file():
        raise BuildArgumentError(
            f"{path} has no image_converter.json, so its normalisation is unknown. Save "
            "the preset's converter too (`converter.save_to_preset(folder)`, or the task's "
            "`save_to_preset`, which saves both)."
        )
    converter = json.loads(converter_file.read_text(encoding="utf-8")).get("config", {})
    arch, _, tag = (name or path.name.lower().replace("-", "_")).partition(".")
    data = hub_card_dict(
        backbone,
        converter,
        arch=re.sub(r"[^a-z0-9_]", "_", arch.lower()),
        tag=tag or "local",
        preset=str(path),
        license=license,
    )
    return card_from_dict(data, source=str(path))
