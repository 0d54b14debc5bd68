"""`GradualUnfreezing`, `trainable_from` and discriminative LRs on keras-hub backbones.

CLIP's and SigLIP's image towers run each transformer block as a layer of its own
(SigLIP's attention-pooling head goes with the last block); ViT, DeiT and
DINOv2 run all their blocks inside one encoder layer, which `recipes.stages.units`
splits into its blocks. Either way a transformer unfreezes block by block, like a
CNN's stages; the keras-hub CNNs (ResNet here) by stage. The presets are the tiny
random ones of `hub_presets` (conftest).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import zoo_transfer
from zoo_transfer import GradualUnfreezing, transfer_optimizer
from zoo_transfer.errors import BuildArgumentError
from zoo_transfer.recipes.stages import find_backbone, layer_groups, units

pytest.importorskip("keras_hub", reason="keras-hub (the hub extra) is not installed")


@pytest.fixture(scope="module")
def hub_card_names(hub_presets):
    names = {}
    for family in ("clip", "siglip", "resnet", "vit", "deit", "dinov2"):
        card = zoo_transfer.card_from_preset(hub_presets[family], name=f"unfreeze_{family}.test")
        zoo_transfer.register_model(card, override=True)
        names[family] = card.name
    return names


def _weights_by_group(model):
    """Group -> the values of its weights; a keras-hub encoder's blocks each in their own."""
    backbone, _ = find_backbone(model)
    groups = layer_groups(model)
    parts = {**units(backbone), **{x.name: x for x in model.layers if x is not backbone}}
    out = {}
    for path, layer in parts.items():
        if path in groups:
            out.setdefault(groups[path], []).extend(v.numpy() for v in layer.weights)
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
        ("siglip", {1: "block2"}, {"stem", "block1"}, {"block2", "head"}),
        ("resnet", {1: "stage4"}, {"stage1", "stage2", "stage3"}, {"stage4", "head"}),
        ("vit", {1: "block2"}, {"stem", "block1"}, {"block2", "head"}),
        ("deit", {1: "block2"}, {"stem", "block1"}, {"block2", "head"}),
        ("dinov2", {1: "block2"}, {"stem", "block1"}, {"block2", "block3", "head"}),
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


@pytest.mark.parametrize("family", ["clip", "siglip", "vit", "deit", "dinov2"])
def test_trainable_from_a_block(family, hub_presets, hub_card_names):
    """Blocks before `trainable_from` are frozen, that one and later ones train, whether
    the blocks are layers (CLIP) or run inside one encoder layer (ViT, DeiT, DINOv2)."""
    name = hub_card_names[family]
    model = zoo_transfer.build(
        name, num_classes=2, weights=str(hub_presets[family]), trainable_from="block2"
    )
    groups = layer_groups(model)
    backbone, _ = find_backbone(model)
    trained = {groups[p] for p, layer in units(backbone).items() if layer.trainable_weights}
    frozen = {groups[p] for p, layer in units(backbone).items() if layer.weights} - trained
    assert "block2" in trained and {"stem", "block1"} <= frozen
    assert not trained & {"stem", "block1"}
    # the model's own list agrees: nothing of block 1 is trained
    block1 = {id(v) for p, x in units(backbone).items() if groups[p] == "block1" for v in x.weights}
    assert block1 and not block1 & {id(v) for v in model.trainable_weights}


def test_each_block_of_an_encoder_layer_gets_its_own_learning_rate(hub_presets, hub_card_names):
    """Discriminative LRs reach inside ViT's encoder: block 1 learns slower than block 2."""
    name = hub_card_names["vit"]
    model = zoo_transfer.build(name, num_classes=2, weights=str(hub_presets["vit"]))
    opt = transfer_optimizer(model, "adam", learning_rate=1e-2, lr_mult=(0.01, 1.0))
    lr = {}
    for v in model.variables:
        if "transformer_block_" in v.path and v.path.endswith("kernel"):
            block = v.path.split("/")[1]
            lr[block] = float(keras.ops.convert_to_numpy(opt._select(v).learning_rate))
    assert set(lr) == {"transformer_block_1", "transformer_block_2"}
    assert lr["transformer_block_1"] < lr["transformer_block_2"] <= 1e-2


def test_a_block_inside_an_encoder_layer_is_no_cut_point(hub_presets, hub_card_names):
    name = hub_card_names["vit"]
    with pytest.raises(BuildArgumentError, match="cannot be cut at block1.*Cut at one of: stem"):
        zoo_transfer.build(name, num_classes=2, weights=None, cut="block1")
    # a recipe picking "the stage before the last" skips it
    model = zoo_transfer.build(name, num_classes=2, weights=None, cut="stem")
    assert find_backbone(model)[0].output.shape[-1] == 32
