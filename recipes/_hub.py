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
TOKEN_POOL = {"DINOV2Backbone": "cls_mean", "ViTBackbone": "cls", "DeiTBackbone": "cls"}
# Families whose position embeddings are interpolated to any input size.
RESIZABLE_TOKENS = {"DINOV2Backbone"}
# Config keys that describe where the weights were trained, not the structure.
_NOT_STRUCTURE = {"name", "trainable", "dtype", "image_shape", "data_format"}


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


def _size_kwargs(card: Card, cls: Any, input_shape: tuple) -> dict[str, Any]:
    """The `image_shape` to build with (and the name); fixed-size transformers refuse
    other sizes."""
    shape = tuple(input_shape)
    if card.tokens is None:
        return {"image_shape": shape}
    if shape != tuple(card.input_size) and cls.__name__ not in RESIZABLE_TOKENS:
        raise BuildArgumentError(
            f"{card.name} ({cls.__name__}) has a fixed input size in keras-hub: "
            f"{card.input_size[0]}x{card.input_size[1]}. Received: input_shape={shape}. "
            "Resize the images to that size (zoo_transfer.data does it), or pick a "
            "DINOv2 card, whose position embeddings interpolate to other sizes."
        )
    if None in shape[:2]:
        raise BuildArgumentError(
            f"{card.name} builds at one fixed size per model (its position embeddings are "
            f"interpolated to it). Received: input_shape={shape}; pass (H, W, 3) with H and "
            f"W multiples of the patch size {card.stages[-1].stride}."
        )
    return {"image_shape": shape}


def check_config(card: Card, class_name: str, config: dict[str, Any], label: str) -> None:
    """`WeightsMismatchError` when a preset's backbone is not the card's architecture."""
    want = card.constructor.replace(":", ".").rpartition(".")[2]
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


def hub_backbone(card: Card, *, weights: Any, input_shape: tuple, include_top: bool) -> Any:
    """The keras-hub backbone of `card` at `input_shape`, with `weights` loaded."""
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
        config = {k: v for k, v in card.kwargs.items() if k not in ("image_shape", "name")}
        return cls(**config, **size)
    if is_preset_folder(weights):
        folder = Path(weights).resolve()
        class_name, config = read_preset_config(folder)
        check_config(card, class_name, config, str(folder))
        return _from_preset(cls, str(folder), size, label=str(folder))
    if weights == "imagenet":
        return _from_preset(cls, preset_location(card), size, label=card.preset or card.name)
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


def _from_preset(cls: Any, location: str, size: dict[str, Any], *, label: str) -> Any:
    try:
        return cls.from_preset(location, **size)
    except (OSError, ValueError) as exc:
        raise WeightsUnavailableError(
            f"Loading the keras-hub preset {label} failed: {exc}"
        ) from exc
