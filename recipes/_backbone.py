"""The card's pretrained network: Keras' structure with weights from any source.

`backbone_model` builds the card's `keras.applications` (or plugin) network and loads
`weights` into it: ImageNet from the checked cache, a Keras 3 `.weights.h5` of the same
architecture (copied by position between builds, so other input sizes work), a Keras 2
`.h5` or a TensorFlow.js folder (by layer name), or a dict of arrays. `build` cuts,
freezes and heads what it returns.
"""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path
from typing import Any

from zoo_transfer.errors import BuildArgumentError, WeightsMismatchError
from zoo_transfer.registry import Card

from ._keras_apps import instantiate
from ._positions import copy_by_position
from ._weights import assign_by_name, imagenet_weights_file, read_legacy_h5


def _weights_kind(weights: Any) -> str:
    if weights is None:
        return "none"
    if isinstance(weights, dict):
        return "named"
    if weights == "imagenet":
        return "imagenet"
    if isinstance(weights, (str, Path)):
        from ._tfjs import tfjs_folder

        path = Path(weights)
        if tfjs_folder(path) is not None:  # the folder, or its model.json
            return "tfjs"
        if path.is_file():
            return "file"
    raise BuildArgumentError(
        f"`weights` must be 'imagenet', None, a Keras weights file (.h5, .weights.h5) or a "
        f"TensorFlow.js folder with model.json. Received: weights={weights!r}, which "
        "does not exist."
    )


def _load_keras3_file(card: Card, path: Path, include_top: bool, **kwargs: Any) -> Any:
    """The architecture that wrote a position-keyed `.weights.h5`, with the file loaded.

    Tries the model with the top asked for first, then the other one.
    """
    errors = []
    for top in (include_top, not include_top):
        source = _structure(card, include_top=top, input_shape=card.input_size, **kwargs)
        try:
            # Keras skips some mismatched parts with only a warning: treat those as errors
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                source.load_weights(str(path))
            skipped = [
                str(w.message)
                for w in caught
                if "Skipping" in str(w.message) or "could not be loaded" in str(w.message)
            ]
            if skipped:
                raise ValueError(f"{len(skipped)} parts skipped, e.g. {skipped[0][:200]}")
            return source
        except Exception as exc:  # Keras raises ValueError or KeyError on a mismatch
            errors.append(f"{'with' if top else 'without'} top: {exc}")
    layers = sorted(set(re.findall(r"name=([\w.-]+)", " ".join(errors))))
    raise WeightsMismatchError(
        f"{path} does not load into {card.name}: mismatching layers include "
        f"{', '.join(layers) or 'unknown'}. Keras 3 .weights.h5 files are keyed by layer "
        "position, so the file must come from this exact architecture (width, top). "
        "Keras said: " + " | ".join(" ".join(e.split())[:400] for e in errors)
    )


def _structure(card: Card, *, include_top: bool, input_shape: tuple, **kwargs: Any) -> Any:
    """The network as Keras builds it for ImageNet weights, without loading any.

    Some constructors add layers only for `weights="imagenet"` (EfficientNet's extra
    `Rescaling`), so pretrained weights of any source go into this structure.
    """
    from .probe import intercept_keras_weights

    if include_top and tuple(input_shape) != tuple(card.input_size):
        # Keras refuses ImageNet builds with a top at another size; no structural change
        # depends on it for the cards' families, so the plain build serves.
        return instantiate(card, include_top=True, weights=None, input_shape=input_shape, **kwargs)
    with warnings.catch_warnings():  # MobileNets warn about sizes without weights files
        warnings.simplefilter("ignore", UserWarning)
        with intercept_keras_weights():  # dry: nothing is downloaded or loaded
            return instantiate(
                card, include_top=include_top, weights="imagenet", input_shape=input_shape, **kwargs
            )


def backbone_model(
    card: Card, *, include_top: bool, weights: Any, input_shape: tuple, **kwargs: Any
) -> Any:
    """The card's Keras network at `input_shape`, with `weights` loaded.

    Weights of the card's own architecture (ImageNet, `.weights.h5`) are copied by
    position between builds; external files (Keras 2 `.h5`, TF.js) by layer name.
    """
    if card.zoo == "hub":
        from ._hub import hub_backbone

        return hub_backbone(card, weights=weights, input_shape=input_shape, include_top=include_top)
    kind = _weights_kind(weights)
    if kind == "none":
        return instantiate(
            card, include_top=include_top, weights=None, input_shape=input_shape, **kwargs
        )
    if kind == "imagenet" and tuple(input_shape) == tuple(card.input_size):
        from .probe import intercept_keras_weights

        path = imagenet_weights_file(card, include_top)  # cached, hash checked, fast offline
        with intercept_keras_weights(serve=str(path)):  # Keras' ImageNet build, this file
            return instantiate(
                card, include_top=include_top, weights="imagenet", input_shape=input_shape, **kwargs
            )
    model = _structure(card, include_top=include_top, input_shape=input_shape, **kwargs)
    if kind == "imagenet":
        source = backbone_model(
            card, include_top=include_top, weights="imagenet", input_shape=card.input_size, **kwargs
        )
        copy_by_position(source, model, label=f"ImageNet weights of {card.name}")
        return model
    if kind == "file":
        path = Path(weights)
        named = read_legacy_h5(path)
        if named is None:
            source = _load_keras3_file(card, path, include_top, **kwargs)
            if include_top and len(source.layers) < len(model.layers):
                raise WeightsMismatchError(
                    f"{path} holds {card.name} without its classifier (top), so the "
                    "pretrained classifier would be random. Pass a file saved with the top, "
                    "or build a new head (num_classes=N)."
                )
            copy_by_position(source, model, label=str(path))
            return model
        label = str(path)
    elif kind == "tfjs":
        from ._tfjs import read_tfjs_weights, tfjs_folder

        folder = tfjs_folder(weights)
        named, label = read_tfjs_weights(folder), f"TF.js folder {folder}"
    else:
        named, label = weights, "the given weights"
    assign_by_name(model, named, source=label)
    return model


def supports(card: Card, kwarg: str) -> bool:
    """Whether the card's constructor takes the keyword `kwarg`."""
    from ._keras_apps import constructor

    try:
        return kwarg in inspect.signature(constructor(card)).parameters
    except (TypeError, ValueError):
        return False
