"""Every keras-hub card, checked against the real keras-hub class it names.

Parametrised like the keras.applications sweep (`hub_card_name`: one card per family by
default, every hub card with `--sweep=full`). Each card's backbone is built once from
its config with random weights (no download). Its parameter count must equal the
card's (and, through the generator, keras-hub's published count for the preset: the
backbone's, with its classifier, or the whole two-tower model's), and every stage's layer
reference must resolve to a tensor of the card's shape at the card's input size (patch
and prefix tokens for the transformers), the shape the computation gives (traced), not
what the layers declare. The feature layer is the backbone's output: the last stage, or
a pooling layer of the model's own that reads it (SigLIP). The card must also equal what
`scripts/make_hub_cards.py` writes from the installed keras-hub.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import weakref
from pathlib import Path

import pytest

from zoo_transfer.registry import card_from_dict, get_card

pytestmark = pytest.mark.sweep
keras_hub = pytest.importorskip("keras_hub", reason="keras-hub (the hub extra) is not installed")

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "make_hub_cards", ROOT / "scripts" / "make_hub_cards.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_hub_cards", module)
    spec.loader.exec_module(module)
    return module


def _preset_key(card) -> str:
    return card.preset.split("/")[-2]  # kaggle://keras/<model>/keras/<preset>/<version>


def _build(card):
    """The card's backbone, its weights never initialised (only the structure is read)."""
    import keras

    from zoo_transfer.recipes._hub import hub_class

    with keras.StatelessScope(initialize_variables=False):  # `fresh_keras` drops them
        return hub_class(card)(**card.kwargs)


_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # backbone -> taps -> shapes


def _problems(card, backbone) -> list[str]:
    """What in `card` disagrees with the built keras-hub `backbone` and keras-hub's list."""
    import keras

    from zoo_transfer.recipes._encoders import encoder_blocks
    from zoo_transfer.recipes._hub_cards import traced_shapes
    from zoo_transfer.recipes._keras_apps import resolve_tap
    from zoo_transfer.recipes.stages import ancestors

    problems = []
    if backbone.count_params() != card.params:
        problems.append(f"params: built {backbone.count_params():,}, card {card.params:,}")
    published = keras_hub.models.Backbone.presets[_preset_key(card)]
    if published["kaggle_handle"] != card.preset:
        problems.append(f"preset: keras-hub's handle is {published['kaggle_handle']}")
    for stage in card.stages:
        if stage.nested:  # block K of an encoder layer that runs them all in one call
            outer, inner = stage.layer.split("/")
            blocks = encoder_blocks(backbone.get_layer(outer)) or []
            k = int(stage.name[5:])
            if len(blocks) < k or blocks[k - 1].name != inner:
                problems.append(f"{stage.name} ({stage.layer}) is not block {k} of {outer}")
    # a nested block's tokens have the shape of the last block's
    taps = [resolve_tap(backbone, (card.stages[-1] if s.nested else s).layer) for s in card.stages]
    feature = resolve_tap(backbone, card.feature_layer)
    if card.tokens is None:  # feature maps: as the layers declare them
        image = keras.tree.flatten(backbone.input)[0]
        declared = keras.Model(image, [*taps, feature]).compute_output_shape((1, *card.input_size))
        *shapes, feature_shape = (tuple(shape[1:]) for shape in declared)
    else:  # tokens: as the computation gives them (keras-hub's SigLIP declares one too many)
        key = tuple(map(id, [*taps, feature]))  # a trace takes a second or two: once per model
        known = _TRACED.setdefault(backbone, {})
        if key not in known:
            known[key] = traced_shapes(backbone, [*taps, feature], card.input_size)
        *shapes, feature_shape = known[key]
    for stage, shape in zip(card.stages, shapes, strict=True):
        if card.tokens is None:
            want = stage.shape
        else:
            want = (card.tokens.prefix + stage.shape[0] * stage.shape[1], stage.shape[2])
        if tuple(shape) != tuple(want):
            problems.append(f"{stage.name} ({stage.layer}): built {shape}, card says {want}")
    pyramid = getattr(backbone, "pyramid_outputs", None) or {}
    for stage in card.stages[1:-1]:  # keras-hub's own map of its blocks (DINOv2)
        key = f"stage{stage.name[5:]}" if stage.name.startswith("block") else None
        if key in pyramid and resolve_tap(backbone, stage.layer) is not pyramid[key]:
            problems.append(f"{stage.name} ({stage.layer}) is not keras-hub's {key} output")
    if feature is not keras.tree.flatten(backbone.output)[0]:
        problems.append(f"feature layer {card.feature_layer} is not the backbone's output")
    if card.feature_layer != card.stages[-1].layer:  # the model's own pooling layer (SigLIP)
        width = card.stages[-1].channels
        if feature_shape != (width,):
            problems.append(
                f"feature layer {card.feature_layer}: built {feature_shape}, not a vector of "
                f"the last stage's width {width}"
            )
        if id(taps[-1]._keras_history[0]) not in ancestors(feature):
            problems.append(f"feature layer {card.feature_layer} does not read the last stage")
    return problems


def test_hub_card_matches_keras_hub(hub_card_name, fresh_keras):
    card = get_card(hub_card_name)
    backbone = _build(card)
    problems = _problems(card, backbone)
    assert not problems, "\n".join(problems)
    generated = card_from_dict(_generator().make_card(_preset_key(card), backbone))
    assert generated == card, "run scripts/make_hub_cards.py: the card file is stale"


def test_a_wrong_fact_is_caught(fresh_keras):
    """The check fails on a card whose stage shape, count or handle is wrong."""
    card = get_card("deit_tiny")
    backbone = _build(card)
    assert _problems(card, backbone) == []
    last = dataclasses.replace(card.stages[-1], shape=(7, 7, 192))
    wrong = [
        dataclasses.replace(card, params=card.params + 1),
        dataclasses.replace(card, stages=(*card.stages[:-1], last)),
        dataclasses.replace(card, preset=card.preset[:-1] + "9"),
    ]
    vit = get_card("vit_base_patch16_224")
    vit_blocks = list(vit.stages)
    vit_blocks[1], vit_blocks[2] = (
        dataclasses.replace(vit_blocks[1], layer=vit_blocks[2].layer),
        dataclasses.replace(vit_blocks[2], layer=vit_blocks[1].layer),
    )
    assert _problems(dataclasses.replace(vit, stages=tuple(vit_blocks)), _build(vit))
    dino = get_card("dinov2_small")
    swapped = (*dino.stages[:2], dataclasses.replace(dino.stages[2], layer=dino.stages[3].layer))
    assert _problems(dataclasses.replace(dino, stages=(*swapped, *dino.stages[3:])), _build(dino))
    for bad in wrong:
        assert _problems(bad, backbone), bad
    # SigLIP: the tokens traced (keras-hub declares one more, a class token it does not
    # make), and the feature layer its attention-pooling head, after the last block
    siglip = get_card("siglip_base_patch16_224")
    tower = _build(siglip)
    assert _problems(siglip, tower) == []
    declared = dataclasses.replace(siglip, tokens=dataclasses.replace(siglip.tokens, prefix=1))
    assert "block12 (sig_lip_vision_encoder_post_layer_norm): built (196, 768), card says " in (
        "\n".join(_problems(declared, tower))
    )
    unpooled = dataclasses.replace(siglip, feature_layer=siglip.stages[-1].layer)
    assert _problems(unpooled, tower) == [
        "feature layer sig_lip_vision_encoder_post_layer_norm is not the backbone's output"
    ]
