"""L2-SP in the grouped optimizer: the pull toward w0 (backbone) and toward 0 (new head),
exactly as its gradient says, only on what trains, with anchors that the optimizer's
state carries through backups and `.keras` files."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer import ArgumentError
from zoo_transfer.optimizers import GroupedOptimizer, transfer_optimizer

LR = 0.1


def _model(keras, trainable_from="stage2"):
    keras.utils.set_random_seed(0)
    return zoo_transfer.build("digitnet", 5, trainable_from=trainable_from)


def _backbone(model):
    return model.get_layer("digitnet")


def _trainable_backbone(model):
    return [v for v in _backbone(model).trainable_weights]


def test_one_sgd_step_adds_the_l2_sp_gradient_exactly(keras_session, digits):
    """Backbone: -lr * (g + alpha (w - w0)); head: -lr * (g + beta w); frozen: nothing."""
    import tensorflow as tf

    keras = keras_session
    x, y, _, _ = digits
    model = _model(keras)
    opt = transfer_optimizer(model, "sgd", learning_rate=LR, l2_sp=3.0, l2_sp_head=2.0)
    kernel = _backbone(model).get_layer("stage3_block1_conv").kernel
    w0 = kernel.numpy().copy()
    moved = np.random.default_rng(0).normal(0, 0.05, w0.shape).astype("float32")
    kernel.assign(w0 + moved)  # after transfer_optimizer: w - w0 = moved
    head = model.get_layer("head_logits").kernel
    frozen = _backbone(model).get_layer("stem_conv").kernel
    model.compile(opt, "sparse_categorical_crossentropy")
    xb, yb = x[:8], y[:8]
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy()(yb, model(xb, training=True))
    g_kernel, g_head = (g.numpy() for g in tape.gradient(loss, [kernel, head]))
    before = {"kernel": kernel.numpy().copy(), "head": head.numpy().copy()}
    stem = frozen.numpy().copy()
    model.train_on_batch(xb, yb)

    np.testing.assert_allclose(
        kernel.numpy() - before["kernel"], -LR * (g_kernel + 3.0 * moved), atol=1e-6
    )
    # toward 0, not toward the head's initial values (they were w at transfer_optimizer)
    np.testing.assert_allclose(
        head.numpy() - before["head"], -LR * (g_head + 2.0 * before["head"]), atol=1e-6
    )
    assert not np.allclose(head.numpy() - before["head"], -LR * g_head, atol=1e-4)
    np.testing.assert_array_equal(frozen.numpy(), stem)


def _train(keras, digits, l2_sp, steps=15):
    x, y, _, _ = digits
    model = _model(keras, trainable_from="stem")
    w0 = {v.path: v.numpy().copy() for v in _trainable_backbone(model)}
    stem_bn = _backbone(model).get_layer("stem_bn").gamma.numpy().copy()
    opt = transfer_optimizer(model, "adam", learning_rate=1e-2, l2_sp=l2_sp)
    model.compile(opt, "sparse_categorical_crossentropy")
    for step in range(steps):
        i = (step * 8) % len(x)
        model.train_on_batch(x[i : i + 8], y[i : i + 8])
    drift = math.sqrt(
        sum(float(np.sum((v.numpy() - w0[v.path]) ** 2)) for v in _trainable_backbone(model))
    )
    frozen_bn_kept = np.array_equal(_backbone(model).get_layer("stem_bn").gamma.numpy(), stem_bn)
    return drift, frozen_bn_kept


def test_a_strong_l2_sp_keeps_the_backbone_near_its_pretrained_weights(keras_session, digits):
    free, kept_free = _train(keras_session, digits, None)
    held, kept_held = _train(keras_session, digits, 10.0)
    assert free > 0.5, "without L2-SP the backbone moves"
    assert held < 0.5 * free, (held, free)
    assert kept_free and kept_held  # BatchNorm is frozen: never stepped, penalty or not


BAD = [-0.1, float("nan"), float("inf"), "0.01", True, [0.01]]


def test_a_bad_strength_is_refused_naming_it(keras_session):
    model = _model(keras_session)
    for value in BAD:
        with pytest.raises(ArgumentError, match=r"`l2_sp`.*Received: l2_sp="):
            transfer_optimizer(model, l2_sp=value)
        with pytest.raises(ArgumentError, match=r"`l2_sp_head`.*Received: l2_sp_head="):
            transfer_optimizer(model, l2_sp=0.1, l2_sp_head=value)


def test_l2_sp_replaces_weight_decay(keras_session):
    model = _model(keras_session)
    with pytest.raises(ArgumentError, match="replaces weight decay.*weight_decay=0.004"):
        transfer_optimizer(model, "adamw", l2_sp=0.1)
    transfer_optimizer(model, "adamw")  # without L2-SP, AdamW is fine


def test_anchors_are_optimizer_state_not_model_weights(keras_session, digits):
    keras = keras_session
    x, y, _, _ = digits
    model = _model(keras)
    pretrained = {v.path: v.numpy().copy() for v in _backbone(model).weights}
    opt = transfer_optimizer(model, "adam", learning_rate=1e-2, l2_sp=1.0)
    model.compile(opt, "sparse_categorical_crossentropy")
    n_weights = len(model.weights)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)

    anchors = opt.anchors()
    # every backbone variable that may train, and the frozen preprocess layer; no head
    may_train = [v.path for v in _backbone(model).trainable_weights] + [
        "preprocess/kernel",
        "preprocess/bias",
    ]
    assert set(anchors) >= set(may_train) - {"preprocess/kernel", "preprocess/bias"}
    assert not any(p.startswith("head_") for p in anchors)
    for path, anchor in anchors.items():
        if path in pretrained:
            np.testing.assert_array_equal(anchor.numpy(), pretrained[path])
        assert not anchor.trainable and any(anchor is v for v in opt.variables)
    assert len(model.weights) == n_weights  # nothing added to the model
    assert not any("anchor" in v.path for v in model.weights)


def test_a_run_resumed_from_a_backup_equals_an_uninterrupted_one(keras_session, digits, tmp_path):
    from zoo_transfer.backup import EpochBackup, restore_backup

    keras = keras_session
    x, y, _, _ = digits
    fit = dict(batch_size=8, verbose=0, shuffle=False)

    def adam():  # named: a second "adam" in one process would be "adam_1", its state
        return keras.optimizers.Adam(1e-2, name="adam")  # saved under other paths

    whole = _model(keras)
    opt = transfer_optimizer(whole, adam(), l2_sp=1.0)
    whole.compile(opt, "sparse_categorical_crossentropy")
    whole.fit(x, y, epochs=1, callbacks=[EpochBackup(tmp_path / "backup")], **fit)
    shutil.copytree(tmp_path / "backup", tmp_path / "after-1")
    whole.fit(x, y, initial_epoch=1, epochs=2, **fit)

    resumed = _model(keras)
    for v in _backbone(resumed).trainable_weights:  # other weights when the anchors are taken
        v.assign(v.numpy() + 0.5)
    opt2 = transfer_optimizer(resumed, adam(), l2_sp=1.0)
    resumed.compile(opt2, "sparse_categorical_crossentropy")
    assert restore_backup(resumed, tmp_path / "after-1") == 1
    for path, anchor in opt.anchors().items():
        np.testing.assert_array_equal(opt2.anchors()[path].numpy(), anchor.numpy())
    resumed.fit(x, y, initial_epoch=1, epochs=2, **fit)
    for a, b in zip(whole.weights, resumed.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)


def test_a_saved_and_reloaded_optimizer_keeps_l2_sp_and_its_anchors(
    keras_session, digits, tmp_path
):
    """`model.save` (with the optimizer) -> `load_model` -> `rebind`: the anchors of layers
    that did not train yet come back too (saved by path, held until a variable exists)."""
    keras = keras_session
    x, y, _, _ = digits
    model = _model(keras)
    opt = transfer_optimizer(model, "adam", learning_rate=1e-2, l2_sp=0.5, l2_sp_head=0.2)
    model.compile(opt, "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "full.keras")

    back = keras.saving.load_model(tmp_path / "full.keras")
    again = back.optimizer.rebind(back)
    assert isinstance(again, GroupedOptimizer)
    assert (again.l2_sp, again.l2_sp_head) == (0.5, 0.2)
    mine, theirs = opt.anchors(), again.anchors()
    assert set(mine) == set(theirs)
    for path, anchor in mine.items():
        np.testing.assert_array_equal(theirs[path].numpy(), anchor.numpy())


def test_two_replicas_step_as_one_device(run_on_two_cpus):
    """Keras sums the replicas' gradients of a loss divided by their number: the penalty's
    gradient is divided the same way, so a mirrored step equals a one-device step."""
    out = run_on_two_cpus(
        """
from zoo_transfer.optimizers import transfer_optimizer
from zoo_transfer.recipes.digitnet import demo_digits
x, y, *_ = demo_digits(train_per_class=2)
x = x.astype("float32")

def step(scope):
    with scope:
        keras.utils.set_random_seed(0)
        model = zoo_transfer.build("digitnet", 5, trainable_from="stage2")
        kernel = model.get_layer("digitnet").get_layer("stage3_block1_conv").kernel
        opt = transfer_optimizer(model, "sgd", learning_rate=0.1, l2_sp=5.0)
        kernel.assign(kernel.numpy() + 0.1)
        model.compile(opt, "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, shuffle=False)
    return kernel.numpy()

one = step(tf.distribute.get_strategy().scope())
two = step(strategy.scope())
print("DIFF", float(np.abs(one - two).max()), float(np.abs(one).max()))
"""
    )
    diff, scale = (float(v) for v in out.split("DIFF")[-1].split())
    assert diff < 1e-5 * max(scale, 1.0), out
