"""`build` and `feature_extractor` on keras-hub presets, from local preset folders.

The presets are tiny random keras-hub backbones of each family saved with
`save_to_preset` (`hub_presets` in conftest), so the real classes, file layout and
image converters are exercised offline.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer.errors import (
    BuildArgumentError,
    WeightsMismatchError,
    WeightsUnavailableError,
)

keras_hub = pytest.importorskip("keras_hub", reason="keras-hub (the hub extra) is not installed")
FAMILIES = ("dinov2", "vit", "deit", "clip", "siglip", "resnet", "mobilenet", "efficientnet")


@pytest.fixture(scope="module")
def hub_cards(hub_presets):
    """`{family: card}`, each made from its preset folder and registered."""
    cards = {}
    for family, folder in hub_presets.items():
        card = zoo_transfer.card_from_preset(folder, name=f"tiny_{family}.test")
        zoo_transfer.register_model(card, override=True)
        cards[family] = card
    return cards


def _images(card, n=4, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *card.input_size)).astype("float32")


@pytest.mark.parametrize("family", FAMILIES)
def test_card_from_preset_normalises_as_the_preset_converter(family, hub_presets, hub_cards):
    from zoo_transfer.recipes import normalization_layer

    card = hub_cards[family]
    converter = keras_hub.layers.ImageConverter.from_preset(str(hub_presets[family]))
    x = _images(card, 2)
    ours = np.asarray(normalization_layer(card)(x))
    theirs = np.asarray(converter(x))
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
    assert card.preprocessing.interpolation == converter.interpolation


@pytest.mark.parametrize("family", FAMILIES)
def test_build_loads_the_preset_freezes_it_and_trains_the_head(family, hub_presets, hub_cards):
    import keras

    card = hub_cards[family]
    model = zoo_transfer.build(card.name, num_classes=3, weights=str(hub_presets[family]))
    reference = keras_hub.models.Backbone.from_preset(str(hub_presets[family]))
    if family in ("clip", "siglip"):  # the card is the image tower
        reference = reference.vision_encoder
    backbone = model.get_layer(card.arch)
    assert backbone.count_params() == reference.count_params() == card.params
    # the backbone's output is the preset's on the normalised images (its weights were
    # perturbed from the initialisers', so an unloaded weight would show)
    x = _images(card)
    normalised = card.preprocessing.normalize(x)
    np.testing.assert_allclose(
        np.asarray(backbone(normalised)), np.asarray(reference(normalised)), atol=1e-4
    )
    assert not backbone.trainable and backbone.trainable_weights == []
    before = [v.numpy() for v in backbone.weights]
    head = model.get_layer("head_logits").kernel.numpy()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, backbone.weights, strict=True))
    assert not np.array_equal(head, model.get_layer("head_logits").kernel.numpy())


def test_transformer_cuts_pools_and_sizes(hub_presets, hub_cards):
    dino, vit = hub_cards["dinov2"], hub_cards["vit"]
    folder = str(hub_presets["dinov2"])
    assert dino.stage_names == ("stem", "block1", "block2", "block3")
    assert dino.tokens.prefix == 1 and dino.tokens.pool == "cls_mean"
    x = _images(dino, 2)
    default = zoo_transfer.build(dino.name, num_classes=2, weights=folder)
    assert default.get_layer("head_concat").output.shape == (None, 64)  # class token + mean
    cut = zoo_transfer.build(
        dino.name, num_classes=2, weights=folder, cut="block2", pooling="cls", head_stages=2
    )
    assert cut.get_layer("head_concat").output.shape == (None, 64)  # block1 and block2
    # cut at block2: the features are the encoder's second output, before the last block
    fx = zoo_transfer.feature_extractor(dino.name, cuts=["block2", "block3"], weights=folder)
    out = fx(x)
    assert out["block2"].shape == (2, 10, 32) and out["block3"].shape == (2, 10, 32)
    assert not np.allclose(out["block2"], out["block3"])
    # DINOv2 interpolates its position embeddings: another size builds with the same weights
    big = zoo_transfer.build(dino.name, num_classes=2, weights=folder, input_shape=(56, 56, 3))
    assert big.get_layer(dino.arch).output.shape == (None, 17, 32)
    with pytest.raises(BuildArgumentError, match="multiples of the patch size 16"):
        zoo_transfer.build(vit.name, num_classes=2, weights=None, input_shape=(40, 40, 3))
    # ViT's position rows are interpolated down as well as up: its smallest input is one
    # patch (progressive resizing starts below the preset's size)
    assert vit.min_input_size == (16, 16, 3) and vit.input_size == (32, 32, 3)
    small = zoo_transfer.build(
        vit.name, num_classes=2, weights=str(hub_presets["vit"]), input_shape=(16, 16, 3)
    )
    assert small.get_layer(vit.arch).output.shape == (None, 2, 32)  # class token + 1 patch
    with pytest.raises(BuildArgumentError, match="CNN"):
        zoo_transfer.build(hub_cards["resnet"].name, num_classes=2, weights=None, pooling="cls")
    whole = zoo_transfer.build(dino.name, num_classes=2, weights=None, trainable_from="stem")
    assert len(whole.get_layer(dino.arch).trainable_weights) > 10


def test_siglip_reads_its_attention_pooled_embedding_and_mean_pools_a_block(hub_presets, hub_cards):
    import keras

    card, folder = hub_cards["siglip"], str(hub_presets["siglip"])
    assert card.stage_names == ("stem", "block1", "block2")
    assert card.tokens.prefix == 0 and card.tokens.pool == "mean"
    assert card.stages[-1].layer.endswith("_post_layer_norm")
    assert card.feature_layer.endswith("_head") and card.stages[-1].shape == (2, 2, 32)
    x = _images(card, 2)
    # the default head reads SigLIP's own embedding (its attention-pooling head): no pooling
    default = zoo_transfer.build(card.name, num_classes=3, weights=folder)
    assert default.get_layer(card.arch).output.shape == (None, 32)
    assert not {"head_pool", "head_patches"} & {layer.name for layer in default.layers}
    # at a block: the mean of its 4 patch tokens (keras-hub's embedding declares 5, a class
    # token it does not make; the card and the tensors have 4)
    fx = zoo_transfer.feature_extractor(card.name, cuts=["block1", "block2"], weights=folder)
    tokens = np.asarray(fx(x)["block1"])
    assert tokens.shape == (2, 4, 32)
    cut = zoo_transfer.build(card.name, num_classes=3, weights=folder, cut="block1")
    pooled = keras.Model(cut.input, cut.get_layer("head_pool").output)(x)
    np.testing.assert_allclose(np.asarray(pooled), tokens.mean(axis=1), atol=1e-5)
    # the last block's mean beside the pooled embedding; no class token to read
    both = zoo_transfer.build(card.name, num_classes=3, weights=folder, head_stages=2)
    assert both.get_layer("head_concat").output.shape == (None, 64)
    assert both.predict(x, verbose=0).shape == (2, 3)
    with pytest.raises(BuildArgumentError, match="class token, and tiny_siglip.test has none"):
        zoo_transfer.build(card.name, num_classes=3, weights=None, cut="block1", pooling="cls")


def test_a_preset_of_another_architecture_is_refused(hub_presets, hub_cards):
    with pytest.raises(WeightsMismatchError, match="card_from_preset"):
        zoo_transfer.build(hub_cards["deit"].name, num_classes=2, weights=str(hub_presets["vit"]))
    with pytest.raises(WeightsMismatchError, match="hidden_dim"):
        zoo_transfer.build("dinov2_small", num_classes=2, weights=str(hub_presets["dinov2"]))


def test_offline_without_a_cached_preset_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "empty"))
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="zoo-transfer fetch dinov2_small"):
        zoo_transfer.build("dinov2_small", num_classes=2)
    assert time.monotonic() - start < 15


def test_without_keras_hub_cards_list_and_build_names_the_extra():
    code = """
import sys
sys.modules["keras_hub"] = None  # as if the hub extra were not installed
import zoo_transfer
from zoo_transfer.errors import MissingExtraError
assert "dinov2_small.lvd142m" in zoo_transfer.list_models("dinov2*")
try:
    zoo_transfer.build("dinov2_small", num_classes=2, weights=None)
except MissingExtraError as exc:
    print("MISSING:", exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "MISSING: keras-hub is not installed" in out.stdout
    assert 'pip install "zoo-transfer[hub]"' in out.stdout


@pytest.mark.parametrize("family", ["vit", "deit", "clip"])
def test_a_fixed_size_transformer_builds_at_another_size_with_interpolated_positions(
    family, hub_presets, hub_cards
):
    """keras-hub's ViT, DeiT and the CLIP tower have one position row per token of the
    size they were made at: at 48 px (a 3x3 grid instead of 2x2) the preset's rows are
    interpolated (prefix rows kept), every other weight is the preset's."""
    card, folder = hub_cards[family], str(hub_presets[family])
    native = zoo_transfer.feature_extractor(card.name, cuts=["stem"], weights=folder)
    big = zoo_transfer.feature_extractor(
        card.name, cuts=["stem"], weights=folder, input_shape=(48, 48, 3)
    )
    prefix = card.tokens.prefix
    assert big.output["stem"].shape[1:] == (prefix + 9, 32)

    def weights(model):
        return {v.path: v.numpy() for v in model.get_layer(card.arch).weights}

    before, after = weights(native), weights(big)
    assert before.keys() == after.keys()
    moved = [p for p in before if before[p].shape != after[p].shape]
    ids = [p for p in moved if "position_ids" in p]  # CLIP's token indices: 0..T-1 again
    for path in ids:
        np.testing.assert_array_equal(after[path].ravel(), np.arange(prefix + 9))
        before.pop(path), after.pop(path), moved.remove(path)
    assert len(moved) == 1 and "position_embedding" in moved[0]
    for path in before.keys() - set(moved):
        np.testing.assert_array_equal(before[path], after[path], err_msg=path)
    old, new = (x[moved[0]].reshape(-1, 32) for x in (before, after))
    np.testing.assert_array_equal(old[:prefix], new[:prefix])  # class (and distillation) rows
    corners_old = old[prefix:].reshape(2, 2, 32)[[0, 0, -1, -1], [0, -1, 0, -1]]
    corners_new = new[prefix:].reshape(3, 3, 32)[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert not np.allclose(corners_new, 0)
    # bicubic between 2 and 3 samples keeps each corner near its own row, not the others'
    nearest = np.argmin(np.abs(corners_new[:, None] - corners_old[None]).sum(-1), axis=1)
    assert nearest.tolist() == [0, 1, 2, 3]
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    assert np.isfinite(big(x)["stem"]).all()
