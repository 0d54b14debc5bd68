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

from ._encoders import encoder_blocks
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


def units(backbone: Any) -> dict[str, Any]:
    """The layers that freeze and train as one, by path, from input to output.

    These are the backbone's layers, except that a keras-hub encoder which runs all its
    transformer blocks in one call (ViT, DeiT, DINOv2) gives its own sublayers instead,
    as `"encoder/block"`: so such a model freezes, unfreezes and takes learning rates
    block by block, as the card's stages `block1`..`blockN`.
    """
    out: dict[str, Any] = {}
    for layer in backbone.layers:
        if encoder_blocks(layer) is None:
            out[layer.name] = layer
        else:
            for sub in layer._flatten_layers(include_self=False, recursive=False):
                out[f"{layer.name}/{sub.name}"] = sub
    return out


def stage_of_layers(backbone: Any, card: Card) -> dict[str, str]:
    """Unit path (see `units`) -> stage name, for the backbone of a model from `build`."""
    out: dict[str, str] = {}
    claimed: set[int] = set()
    present: list[str] = []
    names = {layer.name for layer in backbone.layers}
    for stage in card.stages:
        if stage.nested:  # a block inside an encoder layer: placed below
            if stage.layer.split("/", 1)[0] not in names:
                break
            present.append(stage.name)
            continue
        try:
            tap = resolve_tap(backbone, stage.layer)
        except LayerReferenceError:  # cut before this stage: it is not in the backbone
            break
        deps = ancestors(tap)
        for layer in backbone.layers:
            if id(layer) in deps and id(layer) not in claimed:
                out[layer.name] = stage.name
        claimed |= deps
        present.append(stage.name)
    last = present[-1] if present else card.stages[-1].name
    for layer in backbone.layers:  # after the last stage tap, up to the cut
        out.setdefault(layer.name, last)
    for layer in backbone.layers:
        blocks = encoder_blocks(layer)
        if blocks is None:
            continue
        # block i is stage `block{i+1}`; blocks past the cut (they run, but nothing
        # downstream reads them) go with the last stage; the rest (final norm) with
        # the last block.
        by_id = {}
        for i, block in enumerate(blocks):
            stage = f"block{i + 1}"
            by_id[id(block)] = stage if stage in present else last
        base = out.pop(layer.name)
        for sub in layer._flatten_layers(include_self=False, recursive=False):
            out[f"{layer.name}/{sub.name}"] = by_id.get(id(sub), by_id.get(id(blocks[-1]), base))
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
    """Unit path (`units`) -> group (a stage of the card, or `head`) for every weighted layer."""
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
