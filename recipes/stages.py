"""The stage map: which stage of the card each layer of a built model belongs to.

Public (`zoo_transfer.recipes.stages`): the callbacks, the optimizers, `fine_tune` and
the cached-feature trainer all ask it which layers form the backbone, its stages and
the head.

A layer belongs to stage K when stage K's output depends on it and stage K-1's output
does not. Layers of the outer model outside the backbone with weights are the `head`.
Used by `build` (freezing) and by the training callbacks (unfreezing, LR groups).
"""

from __future__ import annotations

from typing import Any

from zoo_transfer.errors import LayerReferenceError
from zoo_transfer.registry import Card, get_card

from ._keras_apps import resolve_tap

HEAD = "head"


def ancestors(tensor: Any) -> set[int]:
    """ids of the operations that `tensor` depends on (its producer included)."""
    seen: set[int] = set()
    stack = [tensor]
    while stack:
        t = stack.pop()
        history = getattr(t, "_keras_history", None)
        if history is None:
            continue
        op, node_index, _ = history
        if id(op) in seen:
            continue
        seen.add(id(op))
        stack.extend(op._inbound_nodes[node_index].input_tensors)
    return seen


def stage_of_layers(backbone: Any, card: Card) -> dict[str, str]:
    """Layer name -> stage name for the layers of `backbone` (a model from `build`)."""
    out: dict[str, str] = {}
    claimed: set[int] = set()
    last = card.stages[-1].name
    for stage in card.stages:
        try:
            tap = resolve_tap(backbone, stage.layer)
        except LayerReferenceError:  # cut before this stage: it is not in the backbone
            break
        deps = ancestors(tap)
        for layer in backbone.layers:
            if id(layer) in deps and id(layer) not in claimed:
                out[layer.name] = stage.name
        claimed |= deps
        last = stage.name
    for layer in backbone.layers:  # after the last stage tap, up to the cut
        out.setdefault(layer.name, last)
    return out


def find_backbone(model: Any) -> tuple[Any, Card]:
    """The nested backbone of a model from `build`, and its card; `NotATransferModelError`
    for any other model."""
    from zoo_transfer.errors import NotATransferModelError, UnknownModelError

    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            try:
                # the exact variant when built in this process; after a reload, the
                # architecture's default card (the stages are named alike in every variant)
                return layer, get_card(getattr(layer, "zoo_card", None) or layer.name)
            except UnknownModelError:
                continue
    raise NotATransferModelError(
        f"Model {model.name!r} has no nested backbone named after a registry card; "
        "build it with zoo_transfer.build()."
    )


def layer_groups(model: Any) -> dict[str, str]:
    """Layer name -> group (a stage of the card, or `head`) for every weighted layer."""
    backbone, card = find_backbone(model)
    groups = {name: stage for name, stage in stage_of_layers(backbone, card).items()}
    for layer in model.layers:
        if layer is not backbone and layer.weights and layer.name not in groups:
            groups[layer.name] = HEAD
    return groups


def group_order(model: Any) -> list[str]:
    """The groups of `model` from input to output: its stages, then `head`."""
    _, card = find_backbone(model)
    present = set(layer_groups(model).values())
    return [s for s in card.stage_names if s in present] + [HEAD]


def weighted_layers(model: Any) -> list[Any]:
    """The layers with weights of `model`, nested models flattened, in order."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # nested model
            out.extend(weighted_layers(layer))
        elif layer.weights:
            out.append(layer)
    return out
