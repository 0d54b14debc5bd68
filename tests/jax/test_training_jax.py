"""The training path on JAX without TensorFlow: the optimizer, the callbacks, `fine_tune`,
`lr_find` and the cached head, each checked for what it changes, not only that it runs."""

from __future__ import annotations

import numpy as np
import pytest


def _data(n=32, side=32, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, side, side, 3)).astype("float32")
    y = rng.integers(0, classes, n)
    return x, y


def _weights(model):
    import keras

    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.weights}


def _changed(before, after):
    return {p for p in before if not np.array_equal(before[p], after[p])}


@pytest.mark.parametrize("jit", [True, False])
def test_gradual_unfreezing_mid_fit_changes_only_the_scheduled_stage(fresh_keras, jit):
    import keras

    import zoo_transfer
    from zoo_transfer.callbacks import GradualUnfreezing
    from zoo_transfer.optimizers import transfer_optimizer

    x, y = _data()
    model = zoo_transfer.build("digitnet", 3, input_shape=(32, 32, 3))
    optimizer = transfer_optimizer(model, "adam", learning_rate=1e-3)
    model.compile(optimizer, "sparse_categorical_crossentropy", jit_compile=jit)
    snapshots = [_weights(model)]

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(_weights(self.model))

    history = model.fit(
        x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
        callbacks=[GradualUnfreezing({1: "stage3"}, verbose=0), Snapshot()],
    )  # fmt: skip
    head = {"head_logits/kernel", "head_logits/bias"}
    assert _changed(snapshots[0], snapshots[1]) == head  # epoch 0: the head alone
    epoch1 = _changed(snapshots[1], snapshots[2])
    assert head < epoch1
    assert all(p.startswith("stage3") or p in head for p in epoch1)  # and stage3, no other
    assert not any("batch_normalization" in p or "_bn" in p for p in epoch1 - head)  # BN frozen
    frozen, unfrozen, last = history.history["trainable_params"]
    assert unfrozen > frozen and last == unfrozen
    # Adam of stage3 counts its own steps from the unfreeze: 2 epochs x 4 batches
    steps = {o.name.rsplit("_", 1)[-1]: int(o.iterations) for o in optimizer._inner_optimizers}
    assert steps["head"] == 12 and steps["stage3"] == 8
    assert steps.get("stage1", 0) == 0 and steps.get("stem", 0) == 0


def test_first_step_after_unfreezing_is_adams_first_step(fresh_keras):
    """Bias correction for the stage's own step 1: |update| ~= the stage's learning rate
    (its discriminative multiplier, 0.1, times lr) where the gradient is not tiny."""
    import keras

    import zoo_transfer
    from zoo_transfer.callbacks import GradualUnfreezing
    from zoo_transfer.optimizers import transfer_optimizer

    x, y = _data(n=16)
    model = zoo_transfer.build("digitnet", 3, input_shape=(32, 32, 3))
    lr = 1e-3
    model.compile(
        transfer_optimizer(model, "adam", learning_rate=lr, lr_mult={"stage3": 0.1, "head": 1}),
        "sparse_categorical_crossentropy",
        jit_compile=True,
    )  # fmt: skip
    kept = {}

    class FirstStep(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                kept["before"] = _weights(self.model)

        def on_train_batch_end(self, batch, logs=None):
            if "before" in kept and "after" not in kept:
                kept["after"] = _weights(self.model)

    model.fit(
        x, y, batch_size=16, epochs=2, verbose=0,
        callbacks=[GradualUnfreezing({1: "stage3"}, verbose=0), FirstStep()],
    )  # fmt: skip
    path = next(p for p in kept["before"] if p.startswith("stage3") and p.endswith("kernel"))
    step = np.abs(kept["after"][path] - kept["before"][path])
    assert 0.05 * lr < np.median(step[step > 0]) <= 0.101 * lr
    head = np.abs(kept["after"]["head_logits/kernel"] - kept["before"]["head_logits/kernel"])
    assert np.median(head[head > 0]) > 0.2 * lr  # the head at the full rate


def test_l2_sp_pulls_toward_the_pretrained_weights_on_jax(fresh_keras):
    import zoo_transfer
    from zoo_transfer.optimizers import transfer_optimizer

    x, y = _data(n=16)
    distances = {}
    for alpha in (0.0, 100.0):
        import keras

        keras.utils.set_random_seed(0)
        model = zoo_transfer.build("digitnet", 3, input_shape=(32, 32, 3), trainable_from="stage3")
        start = _weights(model)
        optimizer = transfer_optimizer(model, "sgd", learning_rate=1e-3, l2_sp=alpha)
        model.compile(optimizer, "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
        end = _weights(model)
        distances[alpha] = sum(
            float(np.sum((end[p] - start[p]) ** 2)) for p in start if p.startswith("stage3")
        )
        if alpha:
            assert set(optimizer.anchors())  # anchors kept as optimizer state
    assert 0 < distances[100.0] < distances[0.0]


def test_progressive_resizing_compiles_once_per_size(fresh_keras):
    import zoo_transfer
    from zoo_transfer.callbacks import ProgressiveResizing
    from zoo_transfer.data import ResizableArrays

    x, y = _data(n=16, side=48)
    train = ResizableArrays(x, y, size=32, batch_size=8)
    model = zoo_transfer.build("digitnet", 3, input_shape=(None, None, 3))
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    traced = []
    step = model.train_step

    def counting_step(state, data):
        traced.append(tuple(data[0].shape))
        return step(state, data)

    model.train_step = counting_step
    history = model.fit(
        train.dataset(), epochs=5, verbose=0,
        callbacks=[ProgressiveResizing({0: 32, 2: 40, 4: 48}, train, verbose=0)],
    )  # fmt: skip
    assert history.history["image_size"] == [32, 32, 40, 40, 48]
    assert [s[1] for s in traced] == [32, 40, 48]  # one trace per size, 10 steps in all


def test_fine_tune_on_jax_trains_the_head_then_the_backbone(fresh_keras):
    import zoo_transfer

    x, y = _data(n=32)
    model = zoo_transfer.build("digitnet", 3, input_shape=(32, 32, 3))
    start = _weights(model)
    history = zoo_transfer.fine_tune(
        model, (x, y), (x[:8], y[:8]), epochs=1, freeze_epochs=1, verbose=0, batch_size=8
    )
    assert history.history["trainable_params"][0] < history.history["trainable_params"][1]
    changed = _changed(start, _weights(model))
    assert any(p.startswith("stage1") for p in changed)  # fine_tune unfreezes from stage1
    assert "val_accuracy" in history.history


def test_lr_find_on_jax_leaves_the_model_alone(fresh_keras):
    import zoo_transfer

    x, y = _data(n=64)
    model = zoo_transfer.build("digitnet", 3, input_shape=(32, 32, 3))
    start = _weights(model)
    result = zoo_transfer.lr_find(model, (x, y), steps=12, start_lr=1e-5, end_lr=1.0)
    assert len(result.learning_rates) == len(result.losses) >= 3
    rates = result.learning_rates
    assert rates[0] == pytest.approx(1e-5) and rates == sorted(rates)
    assert 1e-5 <= result.suggestion <= 1.0
    assert _changed(start, _weights(model)) == set()


def test_cached_head_on_jax_is_the_plain_fit(fresh_keras):
    """Cached features train the same head as a plain fit on the frozen backbone (one
    full batch per epoch, so the per-epoch shuffle of the features changes nothing)."""
    import keras

    import zoo_transfer
    from zoo_transfer.training import fit_transfer

    x, y = _data(n=32)
    heads, cached = {}, {}
    for cache in ("always", "never"):
        keras.utils.set_random_seed(0)
        model = zoo_transfer.build("digitnet", 3, input_shape=(32, 32, 3))
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        history = fit_transfer(
            model, (x, y), (x[:8], y[:8]), epochs=3, cache=cache, verbose=0, batch_size=32,
        )  # fmt: skip
        cached[cache] = history.cached
        heads[cache] = model.get_layer("head_logits").get_weights()
    assert cached == {"always": True, "never": False}
    for a, b in zip(heads["always"], heads["never"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_linear_probe_on_jax_matches_a_closed_check(fresh_keras):
    import zoo_transfer
    from zoo_transfer.training import probe_head

    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 12)
    x = rng.uniform(0, 60, (36, 32, 32, 3)).astype("float32")
    x[..., 0] += 60 * y[:, None, None]  # a class signal in the red channel
    model = zoo_transfer.build("digitnet", 3, input_shape=(32, 32, 3))
    result = probe_head(model, (x, y), verbose=0)
    assert result is not None and result.train_accuracy >= 0.9
    predicted = model.predict(x, verbose=0).argmax(-1)
    assert np.mean(predicted == y) == pytest.approx(result.train_accuracy, abs=1e-6)


def test_unfreezing_under_mixed_float16_on_jax(fresh_keras):
    """The loss scale unscales every gradient after an unfreeze, not only those of the
    variables trainable when it was built (it failed at the first unfreeze)."""
    import keras

    import zoo_transfer
    from zoo_transfer.callbacks import GradualUnfreezing
    from zoo_transfer.optimizers import GroupedLossScaleOptimizer, transfer_optimizer

    x, y = _data(n=16)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = zoo_transfer.build("digitnet", 3, input_shape=(32, 32, 3))
        optimizer = transfer_optimizer(model, "adam", learning_rate=1e-3)
        assert isinstance(optimizer, GroupedLossScaleOptimizer)
        model.compile(optimizer, "sparse_categorical_crossentropy", jit_compile=True)
        start = _weights(model)
        history = model.fit(
            x, y, batch_size=8, epochs=3, verbose=0,
            callbacks=[GradualUnfreezing({1: "stage3"}, verbose=0)],
        )  # fmt: skip
    finally:
        keras.config.set_dtype_policy("float32")
    assert np.all(np.isfinite(history.history["loss"]))
    changed = _changed(start, _weights(model))
    assert any(p.startswith("stage3") and p.endswith("kernel") for p in changed)
    assert not any(p.startswith(("stem", "stage1", "stage2")) for p in changed)


def test_progressive_resizing_rebuilds_a_hub_transformer_on_jax(fresh_keras, tmp_path):
    """A ViT is built for one size: `fit_transfer` fits 32 px, rebuilds at 48 px with the
    training state carried (step count), and fits on; the pipeline has the new size
    before Keras reads the first batch of the second `fit` (JAX builds from it)."""
    keras_hub = pytest.importorskip("keras_hub", reason="keras-hub (the hub extra) is missing")
    import zoo_transfer
    from zoo_transfer.callbacks import ProgressiveResizing
    from zoo_transfer.data import ResizableArrays
    from zoo_transfer.optimizers import transfer_optimizer

    folder = tmp_path / "tiny_vit"  # one family only: conftest's `hub_presets` makes eight
    keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=16, num_layers=2, num_heads=2, hidden_dim=32,
        mlp_dim=64,
    ).save_to_preset(str(folder))  # fmt: skip
    keras_hub.layers.ViTImageConverter(
        image_size=(32, 32), scale=1 / 127.5, offset=-1.0
    ).save_to_preset(str(folder))
    card = zoo_transfer.card_from_preset(folder, name="jax_vit.test")
    zoo_transfer.register_model(card, override=True)
    model = zoo_transfer.build(card.name, 3, weights=str(folder))
    model.compile(
        transfer_optimizer(model, "adam", learning_rate=1e-2), "sparse_categorical_crossentropy"
    )
    x, y = _data(n=16, side=40)
    train = ResizableArrays(x, y, size=32, batch_size=8, seed=0)
    resizer = ProgressiveResizing({0: 32, 1: 48}, train, verbose=0)
    history = zoo_transfer.fit_transfer(
        model, train.dataset(), epochs=2, callbacks=[resizer], verbose=0, cache="never"
    )
    assert history.history["image_size"] == [32, 48]
    assert tuple(history.model.input.shape) == (None, 48, 48, 3)
    assert int(history.model.optimizer.iterations) == 4  # 2 batches x 2 epochs, carried
    before = model.get_layer("head_logits").get_weights()[0]
    after = history.model.get_layer("head_logits").get_weights()[0]
    assert not np.array_equal(before, after)  # the second build trained on
