"""keras-hub presets as cards: the backbone behind a hub card, and a card from a backbone.

A keras-hub preset is a folder (`config.json`, `model.weights.h5`, and
`image_converter.json` when the preset has an image converter). A hub card names the
backbone class (`constructor`, e.g. `keras_hub.models:DINOV2Backbone`), its config
(`kwargs`), the preset handle (`preset`), and what the preset's image converter does
(`preprocessing`, mode `converter`). keras-hub is an optional extra: without it, the
cards are listed and `build` raises `MissingExtraError` naming the extra.

Weights for a hub card: `"imagenet"` (the default, meaning the card's pretrained
preset, read from keras-hub's Kaggle cache or downloaded), a local preset folder (an
air-gapped machine), or `None` (random init from the card's config).
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from zoo_transfer.errors import (
    BuildArgumentError,
    MissingExtraError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from zoo_transfer.registry import Card

HUB_EXTRA = 'pip install "zoo-transfer[hub]"'
KAGGLE = "https://www.kaggle.com"

# How each transformer family summarises an image from its tokens (the pretrained
# model's own pooling): class token, mean of patch tokens, or both (DINOv2's probe).
# SigLIP pools with a layer of its own (an attention-pooling head, the card's feature
# layer); its entry says how a cut at a block pools: it has no class token.
TOKEN_POOL = {
    "DINOV2Backbone": "cls_mean",
    "ViTBackbone": "cls",
    "DeiTBackbone": "cls",
    "CLIPVisionEncoder": "cls",
    "SigLIPVisionEncoder": "mean",
}
# Presets whose image model is one tower of a two-tower backbone: the attribute.
TOWER_OF = {"CLIPBackbone": "vision_encoder", "SigLIPBackbone": "vision_encoder"}
# Families whose position embeddings are interpolated to any input size.
RESIZABLE_TOKENS = {"DINOV2Backbone"}
# Transformers whose position embeddings have one row per token of the size they were
# built at: another size is built fresh and gets the preset's embeddings interpolated
# (`resize_position_embeddings`), the rest of the weights copied as they are.
INTERPOLATED_TOKENS = {"ViTBackbone", "DeiTBackbone", "CLIPVisionEncoder", "SigLIPVisionEncoder"}
# Config keys that describe where the weights were trained, not the structure.
_NOT_STRUCTURE = {"name", "trainable", "dtype", "image_shape", "input_shape", "data_format"}


def keras_hub_module() -> Any:
    """`keras_hub`, imported; `MissingExtraError` naming the extra when it is missing."""
    try:
        return importlib.import_module("keras_hub")
    except ImportError as exc:
        raise MissingExtraError(
            f"keras-hub is not installed ({exc}), and hub cards build through it. Install "
            f"the extra: {HUB_EXTRA} (Python >= 3.11)."
        ) from None


def hub_class(card: Card) -> Any:
    """The keras-hub backbone class that `card.constructor` names."""
    keras_hub_module()
    module, _, attr = card.constructor.replace(":", ".").rpartition(".")
    cls = getattr(importlib.import_module(module), attr, None)
    if cls is None:
        import keras_hub

        raise MissingExtraError(
            f"{card.name} needs {card.constructor}, which keras-hub {keras_hub.__version__} "
            f"does not have. Upgrade it: {HUB_EXTRA} --upgrade."
        )
    return cls


def is_preset_folder(path: Any) -> bool:
    """Whether `path` is a local keras-hub preset folder (it holds `config.json`)."""
    if not isinstance(path, (str, Path)) or str(path) == "imagenet":
        return False
    return (Path(path) / "config.json").is_file()


def read_preset_config(folder: Path) -> tuple[str, dict[str, Any]]:
    """The backbone class name and its config, as `config.json` of a preset records them."""
    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return data.get("class_name", "?"), dict(data.get("config", {}))


def kaggle_cache_folder(handle: str) -> Path | None:
    """Where kagglehub keeps `kaggle://owner/model/framework/variation/version`."""
    m = re.fullmatch(r"kaggle://([^/]+)/([^/]+)/([^/]+)/([^/]+)/(\d+)", handle)
    if m is None:
        return None
    from kagglehub.config import get_cache_folder

    return Path(get_cache_folder(), "models", *m.groups())


def shape_argument(cls: Any) -> str:
    """The constructor argument for the input size: `image_shape`, or `input_shape`
    (keras-hub's EfficientNet)."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return (
        "input_shape" if "input_shape" in params and "image_shape" not in params else "image_shape"
    )


def _size_kwargs(card: Card, cls: Any, input_shape: tuple) -> dict[str, Any]:
    """The `image_shape` to build with (and the name); fixed-size transformers refuse
    other sizes."""
    shape = tuple(input_shape)
    if card.tokens is None:
        return {shape_argument(cls): shape}
    patch = card.stages[-1].stride
    resizable = cls.__name__ in RESIZABLE_TOKENS | INTERPOLATED_TOKENS
    if shape != tuple(card.input_size) and not resizable:
        raise BuildArgumentError(
            f"{card.name} ({cls.__name__}) has a fixed input size in keras-hub: "
            f"{card.input_size[0]}x{card.input_size[1]}. Received: input_shape={shape}. "
            "Resize the images to that size (zoo_transfer.data does it)."
        )
    if None in shape[:2] or any(int(d) % patch for d in shape[:2]):
        raise BuildArgumentError(
            f"{card.name} builds at one fixed size per model (its position embeddings are "
            f"interpolated to it). Received: input_shape={shape}; pass (H, W, 3) with H and "
            f"W multiples of the patch size {patch}."
        )
    return {"image_shape": shape}


def resize_position_embeddings(
    card: Card,
    value: Any,
    shape: tuple,
    *,
    source: tuple | None = None,
    interpolation: str = "bicubic",
) -> Any:
    """`value`, a position embedding for `card`'s input size (`(T, D)` or `(1, T, D)`: the
    prefix tokens' rows, then one per patch), for a `shape` with another patch grid: the
    prefix rows kept, the grid interpolated bicubically, as timm and DINOv2 do.

    `source`: the `(H, W)` image size `value` is laid out for, when not the card's (a
    model already resized). `interpolation="bilinear"` for optimizer moments: a convex
    mix, so Adam's second moments stay >= 0.
    """
    import keras
    import numpy as np

    value = np.asarray(value)
    patch = card.stages[-1].stride
    size = source if source is not None else card.input_size
    old = (int(size[0]) // patch, int(size[1]) // patch)
    rows, new_rows = value.shape[-2], shape[-2]
    prefix = rows - old[0] * old[1]
    area = new_rows - prefix
    if prefix < 0 or area <= 0:
        raise WeightsMismatchError(
            f"{card.name}: a position embedding of {rows} rows does not fit the card's "
            f"{old[0]}x{old[1]} patch grid."
        )
    ratio = old[1] / old[0]  # the grid keeps the card's aspect unless told otherwise
    height = int(round((area / ratio) ** 0.5))
    width = area // height
    if height * width != area:
        raise WeightsMismatchError(
            f"{card.name}: cannot lay {area} patch rows out as a grid like {old}."
        )
    table = value.reshape(rows, value.shape[-1])
    grid = table[prefix:].reshape(1, old[0], old[1], -1)
    resized = keras.ops.image.resize(grid, (height, width), interpolation=interpolation)
    grid = np.asarray(keras.ops.convert_to_numpy(resized)).reshape(area, -1)
    return np.concatenate([table[:prefix], grid]).reshape(shape).astype(value.dtype)


def resized_weight(
    card: Card,
    variable: Any,
    shape: tuple,
    *,
    source: tuple,
    interpolation: str = "bicubic",
) -> Any:
    """The value of a transformer's size-bound `variable` (a model variable, or optimizer
    state made from one: same path) for a model of `shape`'s patch grid, or None when
    the variable is not bound to the size.

    Position embeddings are interpolated from the grid of `source` (the `(H, W)` the
    variable is laid out for); CLIP's position ids become 0..T-1 again. Optimizer moments
    take `interpolation="bilinear"` (a convex mix keeps Adam's second moments >= 0).
    """
    import numpy as np

    path = getattr(variable, "path", "")
    if card.tokens is None or None in source:
        return None
    if "position_ids" in path:
        return np.arange(int(np.prod(shape))).reshape(shape).astype(variable.dtype)
    if "position_embedding" not in path:
        return None
    value = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
    return resize_position_embeddings(
        card, value, shape, source=source, interpolation=interpolation
    )


def _class_name(card: Card) -> str:
    return card.constructor.replace(":", ".").rpartition(".")[2]


def tower(card: Card, class_name: str, config: dict[str, Any]) -> tuple[str | None, Any]:
    """`(attribute, config)` of the card's model inside a preset's backbone.

    A CLIP (SigLIP) preset is a `CLIPBackbone` (`SigLIPBackbone`) holding the image tower
    (`vision_encoder`, a `CLIPVisionEncoder`) beside the text tower: a card of the tower
    loads it from there.
    `(None, config)` when the preset is the card's class itself.
    """
    want = _class_name(card)
    if class_name == want:
        return None, config
    for key, value in config.items():
        if isinstance(value, dict) and value.get("class_name") == want:
            return key, dict(value.get("config", {}))
    return None, None


def check_config(card: Card, class_name: str, config: dict[str, Any], label: str) -> None:
    """`WeightsMismatchError` when a preset's backbone is not the card's architecture."""
    want = _class_name(card)
    _, inner = tower(card, class_name, config)
    if inner is not None:
        class_name, config = want, inner
    if class_name != want:
        raise WeightsMismatchError(
            f"{label} holds a {class_name}, but {card.name} is a {want}. Pass a preset of "
            f"that class, or make a card for this one: zoo_transfer.card_from_preset({label!r})."
        )
    differ = sorted(
        k
        for k in set(card.kwargs) | set(config)
        if k not in _NOT_STRUCTURE and _plain(card.kwargs.get(k)) != _plain(config.get(k))
    )
    if differ:
        shown = ", ".join(
            f"{k}={_plain(config.get(k))!r} (card: {_plain(card.kwargs.get(k))!r})"
            for k in differ[:4]
        )
        raise WeightsMismatchError(
            f"{label} is not {card.name}'s architecture: {shown}. Pass the preset the card "
            f"describes, or make a card for this one: zoo_transfer.card_from_preset({label!r})."
        )


def _plain(value: Any) -> Any:
    """Lists and tuples compare equal (JSON turns tuples into lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# keras-hub 0.32 layers whose `get_config` a plain-Keras load cannot use: ViT's patch
# embedding and DeiT's embeddings give two values their constructors refuse (they derive
# them); DeiT's encoder reads `key_dim`, which its constructor neither takes nor sets, so
# saving fails. Those keys are left out of their configs.
CONFIG_FIXES = {
    "ViTPatchingAndEmbedding": ("num_patches", "num_positions"),
    "DeiTEncoder": ("key_dim",),
    "DeiTEmbeddings": ("num_patches", "num_positions"),
}


def loadable_configs(model: Any) -> Any:
    """`model` with the `get_config` of its `CONFIG_FIXES` layers mended (per instance), so
    that it saves, and loads in plain Keras; layers already right are left alone."""
    for layer in model._flatten_layers(include_self=False):
        keys = CONFIG_FIXES.get(type(layer).__name__)
        if keys and "get_config" not in vars(layer):
            object.__setattr__(layer, "get_config", _without(layer, keys))
    return model


def _without(layer: Any, keys: tuple[str, ...]) -> Any:
    method = type(layer).get_config

    def get_config() -> dict[str, Any]:
        absent = [k for k in keys if not hasattr(layer, k)]
        for key in absent:  # read by the method, never set by the constructor
            object.__setattr__(layer, key, None)
        try:
            config = method(layer)
        finally:
            for key in absent:
                object.__delattr__(layer, key)
        return {k: v for k, v in config.items() if k not in keys}

    return get_config


def hub_backbone(card: Card, *, weights: Any, input_shape: tuple, include_top: bool) -> Any:
    """The keras-hub backbone of `card` at `input_shape`, with `weights` loaded."""
    return loadable_configs(
        _hub_backbone(card, weights=weights, input_shape=input_shape, include_top=include_top)
    )


def _hub_backbone(card: Card, *, weights: Any, input_shape: tuple, include_top: bool) -> Any:
    if include_top:
        raise BuildArgumentError(
            f"{card.name} is a keras-hub backbone without a pretrained classifier. Pass "
            "num_classes=N for a new head, or use zoo_transfer.feature_extractor."
        )
    cls = hub_class(card)
    size = _size_kwargs(card, cls, input_shape)
    if card.kwargs.get("name"):  # layer names follow it (DINOv2), whatever a preset says
        size["name"] = card.kwargs["name"]
    if weights is None:
        drop = ("image_shape", "input_shape", "name")
        config = {k: v for k, v in card.kwargs.items() if k not in drop}
        return cls(**config, **size)
    if is_preset_folder(weights):
        return _from_folder(card, cls, Path(weights).resolve(), size)
    if weights == "imagenet":
        location = preset_location(card)
        if not is_preset_folder(location):  # online: keras-hub downloads it into its cache
            _from_preset(hub_class_base(), location, {}, label=location)
            location = preset_location(card)
        return _from_folder(card, cls, Path(location), size)
    raise BuildArgumentError(
        f"`weights` for {card.name} (a keras-hub preset) must be 'imagenet' (the card's "
        "pretrained preset), a local preset folder (with config.json and "
        f"model.weights.h5), or None. Received: weights={weights!r}."
    )


def preset_location(card: Card) -> str:
    """Where to load `card`'s pretrained preset from: kagglehub's cache when the preset is
    there, else its handle when Kaggle answers; `WeightsUnavailableError` (within seconds
    offline) otherwise."""
    from ._weights import _reachable

    handle = card.preset or ""
    cached = kaggle_cache_folder(handle)
    if cached is not None and (cached / "config.json").is_file():
        return str(cached)
    if Path(handle).is_dir():
        return str(Path(handle).resolve())
    if not _reachable(KAGGLE):
        raise WeightsUnavailableError(
            f"The keras-hub preset {handle} for {card.name} is not cached "
            f"({cached or 'no cache folder'} does not exist) and Kaggle cannot be reached. "
            f"Run `zoo-transfer fetch {card.name} --to DIR` on a connected machine, copy DIR "
            "here and pass weights=DIR (a preset folder), or build with weights=None."
        )
    return handle


def fetch_preset(card: Card, to: Path | None = None) -> Path:
    """Download `card`'s preset (on a connected machine) and return its folder.

    Into kagglehub's cache, where `weights="imagenet"` finds it; with `to`, also copied
    to `to/<preset>/`, a folder to carry to an air-gapped machine and pass as
    `weights=`. An existing copy there is kept, never overwritten.
    """
    import shutil

    from ._weights import _reachable

    keras_hub_module()  # kagglehub comes with it: MissingExtraError names the extra
    handle = card.preset or ""
    cached = kaggle_cache_folder(handle)
    if cached is not None and (cached / "config.json").is_file():
        source = cached
    elif not _reachable(KAGGLE):
        raise WeightsUnavailableError(
            f"Cannot fetch {card.name}: its preset {handle} is not cached "
            f"({cached}) and Kaggle cannot be reached. Run this on a connected machine."
        )
    else:
        import kagglehub

        source = Path(kagglehub.model_download(handle.removeprefix("kaggle://")))
    if to is None:
        return source
    dest = Path(to) / handle.rstrip("/").split("/")[-2]
    if (dest / "config.json").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, dest, dirs_exist_ok=True)
    return dest


def hub_class_base() -> Any:
    """keras-hub's `Backbone`, whose `from_preset` builds whatever class a preset holds."""
    return keras_hub_module().models.Backbone


def _from_folder(card: Card, cls: Any, folder: Path, size: dict[str, Any]) -> Any:
    """The card's backbone from a preset folder: the preset itself, or its tower copied
    into a build named as the card says (so the card's layer names hold)."""
    from ._positions import copy_by_position

    class_name, config = read_preset_config(folder)
    check_config(card, class_name, config, str(folder))
    key, _ = tower(card, class_name, config)
    resized = cls.__name__ in INTERPOLATED_TOKENS and tuple(
        size.get("image_shape", card.input_size)
    ) != tuple(card.input_size)
    if key is None and not resized:
        return _from_preset(cls, str(folder), size, label=str(folder))
    if key is None:  # the preset at its own size, then copied into the size asked for
        source = _from_preset(cls, str(folder), {}, label=str(folder))
    else:
        source = getattr(_from_preset(hub_class_base(), str(folder), {}, label=str(folder)), key)
    kwargs = {
        k: v for k, v in card.kwargs.items() if k not in ("image_shape", "input_shape", "name")
    }
    target = cls(**kwargs, **size)
    adapt = None
    if resized:

        def adapt(variable: Any, shape: tuple) -> Any:
            return resized_weight(card, variable, shape, source=tuple(card.input_size[:2]))

    copy_by_position(source, target, label=f"{folder} ({key or class_name})", adapt=adapt)
    return target


def _from_preset(cls: Any, location: str, size: dict[str, Any], *, label: str) -> Any:
    try:
        return cls.from_preset(location, **size)
    except (OSError, ValueError) as exc:
        raise WeightsUnavailableError(
            f"Loading the keras-hub preset {label} failed: {exc}"
        ) from exc
