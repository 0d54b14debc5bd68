"""`resize_model` and progressive resizing of a transformer built at one size.

Tiny random keras-hub presets (`hub_presets` in conftest) stand in for the real ones:
ViT (class token, an `Embedding` of positions), DINOv2 (keras-hub interpolates its
positions into a trainable weight of its own) and SigLIP (no class token, position ids).
"""

from __future__ import annotations

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer.callbacks import ProgressiveResizing
from zoo_transfer.data import ResizableArrays
from zoo_transfer.errors import BuildArgumentError, NotATransferModelError

pytest.importorskip("keras_hub", reason="keras-hub (the hub extra) is not installed")


@pytest.fixture(scope="module")
def cards(hub_presets):
    out = {}
    for family in hub_presets:
        card = zoo_transfer.card_from_preset(hub_presets[family], name=f"rs_{family}.test")
        zoo_transfer.register_model(card, override=True)
        out[family] = (card, str(hub_presets[family]))
    return out


def _data(side, n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, side, side, 3)).astype("float32"), np.arange(n) % 3


def _positions(model):
    return [v for v in model.weights if "position_embedding" in v.path]


@pytest.mark.parametrize("family", ["vit", "dinov2", "siglip"])
def test_resize_model_keeps_weights_training_state_and_interpolates_positions(
    family, cards, fresh_keras
):
    card, folder = cards[family]
    patch = card.stages[-1].stride
    small, big = 2 * patch, 3 * patch
    # the whole backbone trains, position rows included: their moments are not zero
    model = zoo_transfer.build(
        card.name, 3, weights=folder, input_shape=(small, small, 3), trainable_from="stem"
    )
    optimizer = zoo_transfer.transfer_optimizer(model, "adam", learning_rate=1e-2, l2_sp=0.01)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*_data(small), batch_size=4, epochs=1, verbose=0)
    frozen = [v.path for v in model.get_layer(card.arch).layers[-1].weights]
    model.get_layer(card.arch).layers[-1].trainable = False  # a mixed state from here
    assert frozen and not set(frozen) & {v.path for v in model.trainable_weights}

    bigger = zoo_transfer.resize_model(model, big)

    assert tuple(bigger.input.shape) == (None, big, big, 3)
    assert tuple(model.input.shape) == (None, small, small, 3)  # the old model is unchanged
    before, after = model.weights, bigger.weights
    assert len(before) == len(after)
    moved = [(a, b) for a, b in zip(before, after, strict=True) if a.shape != b.shape]
    for a, b in zip(before, after, strict=True):
        if a.shape == b.shape:
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    moved_weights = [(a, b) for a, b in moved if "position_ids" not in a.path]
    assert len(moved_weights) == 1 and "position_embedding" in moved_weights[0][0].path
    old, new = (v.numpy().reshape(-1, v.shape[-1]) for v in moved_weights[0])
    prefix = old.shape[0] - 4  # a 2x2 grid becomes 3x3; the class token row stays
    assert new.shape[0] == prefix + 9
    np.testing.assert_array_equal(old[:prefix], new[:prefix])
    assert [layer.trainable for layer in model._flatten_layers()] == [
        layer.trainable for layer in bigger._flatten_layers()
    ]
    assert len(bigger.trainable_weights) == len(model.trainable_weights)

    old_opt, new_opt = model.optimizer, bigger.optimizer
    assert new_opt is not old_opt and int(new_opt.iterations.numpy()) == 3  # 12 images / 4
    assert new_opt.l2_sp == 0.01 and new_opt.multipliers == old_opt.multipliers
    pairs = list(zip(old_opt.variables, new_opt.variables, strict=True))
    same = [(a, b) for a, b in pairs if a.shape == b.shape]
    assert any(np.any(a.numpy()) for a, _ in same)  # moments that trained
    for a, b in same:
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    resized = [(a, b) for a, b in pairs if a.shape != b.shape]
    assert resized and all("position_embedding" in a.path for a, _ in resized)
    for a, b in resized:
        assert np.isfinite(b.numpy()).all()
        if "velocity" in a.path:  # bilinear: Adam's second moments stay >= 0
            assert b.numpy().min() >= 0 and np.any(b.numpy())

    x, y = _data(big)
    history = bigger.fit(x, y, batch_size=4, epochs=1, verbose=0)  # it trains on at once
    assert np.isfinite(history.history["loss"][0])
    assert int(bigger.optimizer.iterations.numpy()) == 6


def test_fit_transfer_rebuilds_a_transformer_for_each_size(cards, fresh_keras):
    """One `fit` per size: the epochs at 32 px, then at 48 px on a rebuilt model, the
    history of both in one, `history.model` the last build."""
    card, folder = cards["vit"]
    model = zoo_transfer.build(card.name, 3, weights=folder, input_shape=(32, 32, 3))
    model.compile(
        zoo_transfer.transfer_optimizer(model, "adam", learning_rate=1e-2),
        "sparse_categorical_crossentropy", metrics=["accuracy"],
    )  # fmt: skip
    x, y = _data(40, n=16)
    train = ResizableArrays(x, y, size=32, batch_size=8, seed=0)
    val = ResizableArrays(x[:8], y[:8], size=32, batch_size=8, shuffle=False)
    schedule = ProgressiveResizing({0: 32, 2: 48}, train, validation=val, verbose=0)
    unfreeze = zoo_transfer.GradualUnfreezing({1: "block2"}, verbose=0)
    head_before = model.get_layer("head_logits").get_weights()[0].copy()

    history = zoo_transfer.fit_transfer(
        model, train.dataset(), val.dataset(), epochs=3, callbacks=[schedule, unfreeze],
        verbose=0, cache="never",
    )  # fmt: skip

    trained = history.model
    assert trained is not model and tuple(trained.input.shape) == (None, 48, 48, 3)
    assert history.epoch == [0, 1, 2]
    assert history.history["image_size"] == [32, 32, 48]
    assert history.history["val_image_size"] == [32, 32, 48]  # each build's own size
    assert all(np.isfinite(history.history["val_loss"]))
    params = history.history["trainable_params"]
    assert params[0] < params[1] == params[2]  # block2 stays unfrozen across the rebuild
    assert unfreeze.events == [(1, "block2")]  # once, not once per fit
    assert int(trained.optimizer.iterations.numpy()) == 6  # 2 batches x 3 epochs, carried
    head_after = trained.get_layer("head_logits").get_weights()[0]
    assert not np.allclose(head_before, head_after)
    np.testing.assert_array_equal(  # the first build stopped where the second started
        model.get_layer("head_logits").get_weights()[0].shape, head_after.shape
    )


def test_one_fit_cannot_resize_a_transformer_and_a_loaded_model_cannot_be_rebuilt(
    cards, fresh_keras, tmp_path
):
    keras = fresh_keras
    card, folder = cards["vit"]
    model = zoo_transfer.build(card.name, 3, weights=folder, input_shape=(32, 32, 3))
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = _data(32, n=8)
    train = ResizableArrays(x, y, size=32, batch_size=8)
    with pytest.raises(BuildArgumentError, match="fit_transfer"):
        model.fit(
            train.dataset(), epochs=2, verbose=0,
            callbacks=[ProgressiveResizing({0: 32, 1: 48}, train, verbose=0)],
        )  # fmt: skip
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    with pytest.raises(NotATransferModelError, match="not made by zoo_transfer.build"):
        zoo_transfer.resize_model(loaded, 48)
    with pytest.raises(BuildArgumentError, match="positive int"):
        zoo_transfer.resize_model(model, 0)


@pytest.mark.parametrize("family", ["deit", "clip", "resnet", "mobilenet", "efficientnet"])
def test_progressive_resizing_on_the_other_hub_families(family, cards, fresh_keras):
    """The transformers are rebuilt for each size; a CNN takes both sizes in one model
    (`input_shape=(None, None, 3)`): `history.model` is `model` itself."""
    card, folder = cards[family]
    native = card.input_size[0]
    if card.tokens is not None:
        shape, sizes = (native, native, 3), {0: native, 1: native + card.stages[-1].stride}
    else:
        shape, sizes = (None, None, 3), {0: native, 1: native + 32}
    model = zoo_transfer.build(card.name, 3, weights=folder, input_shape=shape)
    model.compile(
        zoo_transfer.transfer_optimizer(model, "adam", learning_rate=1e-2),
        "sparse_categorical_crossentropy",
    )
    x, y = _data(64, n=16)
    train = ResizableArrays(x, y, size=native, batch_size=8, seed=0)
    before = model.get_layer("head_logits").get_weights()[0].copy()

    history = zoo_transfer.fit_transfer(
        model, train.dataset(), epochs=2, verbose=0, cache="never",
        callbacks=[ProgressiveResizing(sizes, train, verbose=0)],
    )  # fmt: skip

    assert history.history["image_size"] == list(sizes.values())
    trained = history.model
    if card.tokens is not None:
        assert trained is not model and tuple(trained.input.shape) == (None, sizes[1], sizes[1], 3)
    else:
        assert trained is model
    assert int(trained.optimizer.iterations.numpy()) == 4  # 2 batches x 2 epochs
    assert not np.allclose(before, trained.get_layer("head_logits").get_weights()[0])
