"""`GradualUnfreezing`, `trainable_from` and discriminative LRs on keras-hub backbones.

CLIP's image tower runs each transformer block as a layer of its own, so it unfreezes
block by block like a CNN's stages; the keras-hub CNNs (ResNet here) by stage. The
presets are the tiny random ones of `hub_presets` (conftest).
"""

from __future__ import annotations

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer import GradualUnfreezing, transfer_optimizer
from zoo_transfer.recipes.stages import layer_groups

pytest.importorskip("keras_hub", reason="keras-hub (the hub extra) is not installed")


@pytest.fixture(scope="module")
def hub_card_names(hub_presets):
    names = {}
    for family in ("clip", "resnet"):
        card = zoo_transfer.card_from_preset(hub_presets[family], name=f"unfreeze_{family}.test")
        zoo_transfer.register_model(card, override=True)
        names[family] = card.name
    return names


def _weights_by_group(model):
    groups = layer_groups(model)
    out = {}
    for layer in zoo_transfer.recipes.stages.weighted_layers(model):
        out.setdefault(groups.get(layer.name, "?"), []).extend(v.numpy() for v in layer.weights)
    return out


def _moved(before, after):
    return {
        group: any(
            not np.array_equal(a, b) for a, b in zip(before[group], after[group], strict=True)
        )
        for group in before
    }


@pytest.mark.parametrize(
    ("family", "schedule", "frozen", "trained"),
    [
        ("clip", {1: "block2"}, {"stem", "block1"}, {"block2", "head"}),
        ("resnet", {1: "stage4"}, {"stage1", "stage2", "stage3"}, {"stage4", "head"}),
    ],
)
def test_gradual_unfreezing_moves_only_the_unfrozen_stages(
    family, schedule, frozen, trained, hub_presets, hub_card_names
):
    name = hub_card_names[family]
    model = zoo_transfer.build(name, num_classes=2, weights=str(hub_presets[family]))
    card = zoo_transfer.get_card(name)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, *card.input_size)).astype("float32")
    y = np.array([0, 1] * 4)
    model.compile(
        transfer_optimizer(model, "adam", learning_rate=1e-2, lr_mult={"head": 1.0}),
        "sparse_categorical_crossentropy",
    )
    before = _weights_by_group(model)
    history = model.fit(
        x, y, epochs=2, batch_size=4, verbose=0, callbacks=[GradualUnfreezing(schedule, verbose=0)]
    )
    moved = _moved(before, _weights_by_group(model))
    assert {g for g in frozen if moved[g]} == set(), moved
    assert {g for g in trained if not moved[g]} == set(), moved
    params = history.history["trainable_params"]
    assert params[1] > params[0]  # the event shows in the logs


def test_trainable_from_a_block_of_clip(hub_presets, hub_card_names):
    name = hub_card_names["clip"]
    model = zoo_transfer.build(
        name, num_classes=2, weights=str(hub_presets["clip"]), trainable_from="block2"
    )
    backbone = model.get_layer(zoo_transfer.get_card(name).arch)
    trainable = {layer.name for layer in backbone.layers if layer.trainable_weights}
    card = zoo_transfer.get_card(name)
    assert card.stage("block2").layer in trainable
    assert card.stage("block1").layer not in trainable
    assert card.stage("stem").layer not in trainable
