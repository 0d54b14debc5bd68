"""A built transfer model at another input size, weights and all: the recipe side of
progressive resizing for a backbone that is built at one size (the keras-hub
transformers).

A CNN from `build(..., input_shape=(None, None, 3))` takes every size in one model, so
progressive resizing only changes the images. A ViT's position embeddings have one row
per patch of the size it was built at, so each size needs its own build: `rebuild_at`
makes it and moves every weight across (position rows interpolated, as `build` does for
a preset at another size) and keeps which layers train. `zoo_transfer.resize_model`
adds the optimizer's state and the compilation.
"""

from __future__ import annotations

import contextlib
from typing import Any

from zoo_transfer.errors import NotATransferModelError

from ._build import BUILD_ARGUMENTS, build
from ._hub import resized_weight
from ._positions import copy_by_position
from .stages import find_backbone


def rebuild_at(model: Any, size: int) -> Any:
    """`model`, a model from `build` (or a recipe) in this process, built again for
    `size` x `size` images with its weights, uncompiled.

    A transformer's position embedding is interpolated to the new patch grid (prefix
    rows kept; `resized_weight`); every other weight is copied as it is. Layers train or
    stay frozen as in `model` (`GradualUnfreezing`'s changes included). `model` itself
    is not changed. `zoo_transfer.resize_model` also carries the optimizer.

    ```python
    model = zoo_transfer.build("vit_base_patch16_224.imagenet", num_classes=5,
                               input_shape=(160, 160, 3))
    bigger = zoo_transfer.recipes.rebuild_at(model, 224)
    ```
    """
    arguments = getattr(model, BUILD_ARGUMENTS, None)
    if arguments is None:
        raise NotATransferModelError(
            f"Model {model.name!r} was not made by zoo_transfer.build in this process (a "
            "loaded .keras file, or another model), so it cannot be rebuilt at another "
            "size. Build it with zoo_transfer.build(...) and load the weights into it."
        )
    _, card = find_backbone(model)
    side = int(size)
    old_shape = tuple(model.inputs[0].shape[1:3])
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow only
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        new = build(**{**arguments, "input_shape": (side, side, 3), "weights": None})

    def adapt(variable: Any, shape: tuple) -> Any:
        return resized_weight(card, variable, shape, source=old_shape)

    copy_by_position(model, new, label=f"{model.name} at {old_shape}", adapt=adapt)
    old_layers, new_layers = list(model._flatten_layers()), list(new._flatten_layers())
    for a, b in zip(old_layers, new_layers, strict=True):  # parents first: children last
        b.trainable = a.trainable
    return new
