"""Discriminative learning rates: exact per-group steps, Adam included, with schedules."""

from __future__ import annotations

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer import BuildArgumentError
from zoo_transfer.callbacks import GradualUnfreezing
from zoo_transfer.optimizers import GroupedOptimizer, resolve_multipliers, transfer_optimizer

MULT = {"stage1": 0.01, "stage4": 0.1, "head": 1.0}
# a weighted layer from each group of mobilenet_v3_small, and its expected multiplier
PROBES = {
    "conv": 0.01,
    "expanded_conv_project": 0.01,
    "expanded_conv_3_expand": 0.1,
    "conv_1": 0.1,
    "head_logits": 1.0,
}


def _model(keras):
    keras.utils.set_random_seed(0)
    # bn="train": with random weights, BatchNorm on batch statistics keeps the gradients
    # at the stem large enough to show in float32 weights after one small step
    return zoo_transfer.build(
        "mobilenet_v3_small",
        3,
        weights=None,
        input_shape=(32, 32, 3),
        trainable_from="stem",
        bn="train",
    )


def _kernel(model, name):
    if name.startswith("head_"):
        return model.get_layer(name).kernel
    return model.get_layer("mobilenet_v3_small").get_layer(name).kernel


def _one_step(keras, model, optimizer, data):
    x, y = data
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy())
    before = {n: _kernel(model, n).numpy().copy() for n in PROBES}
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy()(y, model(x, training=True))
    variables = [_kernel(model, n) for n in PROBES]
    grads = dict(zip(PROBES, (g.numpy() for g in tape.gradient(loss, variables)), strict=True))
    model.train_on_batch(x, y)
    deltas = {n: _kernel(model, n).numpy() - before[n] for n in PROBES}
    return deltas, grads


def test_multipliers_fill_unnamed_groups_towards_the_head():
    groups = ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert resolve_multipliers(groups, MULT) == {
        "stem": 0.01,
        "stage1": 0.01,
        "stage2": 0.1,
        "stage3": 0.1,
        "stage4": 0.1,
        "head": 1.0,
    }
    spread = resolve_multipliers(groups, (0.001, 1.0))
    assert spread["stem"] == pytest.approx(0.001) and spread["head"] == pytest.approx(1.0)
    assert spread["stage2"] / spread["stage1"] == pytest.approx(spread["head"] / spread["stage4"])
    with pytest.raises(BuildArgumentError, match="unknown groups"):
        resolve_multipliers(groups, {"stage9": 1.0})


def test_sgd_steps_follow_the_multipliers_exactly(fresh_keras, small_data):
    keras = fresh_keras
    model = _model(keras)
    opt = transfer_optimizer(model, "sgd", learning_rate=0.1, lr_mult=MULT)
    deltas, grads = _one_step(keras, model, opt, small_data)
    for name, mult in PROBES.items():
        # float32 weights of ~0.1 carry ~1e-8 of rounding in each difference
        np.testing.assert_allclose(
            deltas[name], -0.1 * mult * grads[name], rtol=1e-3, atol=1e-7, err_msg=name
        )
        ratio = np.linalg.norm(deltas[name]) / np.linalg.norm(grads[name])
        assert ratio == pytest.approx(0.1 * mult, rel=1e-3), name


def test_adam_step_sizes_follow_the_multipliers(fresh_keras, small_data):
    keras = fresh_keras
    model = _model(keras)
    opt = transfer_optimizer(model, "adam", learning_rate=1e-3, lr_mult=MULT)
    deltas, grads = _one_step(keras, model, opt, small_data)
    for name, mult in PROBES.items():
        big = np.abs(grads[name]) > 1e-4  # Adam's first step is lr * g / (|g| + eps)
        step = np.median(np.abs(deltas[name][big]))
        assert step == pytest.approx(1e-3 * mult, rel=0.02), name


def test_scaling_gradients_would_not_work_for_adam(fresh_keras):
    """Why the LR is scaled, not the gradient: Adam's step ignores gradient scale."""
    keras = fresh_keras
    steps = []
    for scale in (1.0, 0.01):
        v = keras.Variable(np.ones(100, "float32"))
        g = np.random.default_rng(0).normal(size=100).astype("float32") * scale
        opt = keras.optimizers.Adam(1e-3)
        opt.apply([g], [v])
        steps.append(np.median(np.abs(v.numpy() - 1.0)))
    assert steps[1] == pytest.approx(steps[0], rel=0.01)  # 100x smaller gradient, same step


def test_schedules_and_later_unfreezing_compose(fresh_keras, small_data):
    keras = fresh_keras
    keras.utils.set_random_seed(0)
    model = zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(32, 32, 3))
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    opt = transfer_optimizer(model, "adam", learning_rate=schedule, lr_mult=MULT)
    model.compile(opt, "sparse_categorical_crossentropy")
    x, y = small_data
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=3,
        verbose=0,
        callbacks=[GradualUnfreezing({2: "stage4"}, verbose=0)],
    )
    assert int(opt.iterations.numpy()) == 3
    by_unit = opt._by_unit
    assert int(by_unit["stage4"].iterations.numpy()) == 1  # unfrozen for the last step only
    assert int(by_unit["head"].iterations.numpy()) == 3
    # both read the global schedule, times their group's multiplier
    lr_stage4 = float(by_unit["stage4"].learning_rate.numpy())
    lr_head = float(by_unit["head"].learning_rate.numpy())
    assert lr_head == pytest.approx(0.1 * 0.5**3)
    assert lr_stage4 == pytest.approx(0.1 * 0.5**3 * 0.1)


def test_config_round_trip(fresh_keras):
    keras = fresh_keras
    model = _model(keras)
    opt = transfer_optimizer(model, "adam", learning_rate=1e-3, lr_mult=(0.01, 1.0))
    again = GroupedOptimizer.from_config(opt.get_config())
    assert again.groups == opt.groups and again.multipliers == opt.multipliers
    assert again.get_config()["base"] == opt.get_config()["base"]


def test_unfreezing_part_of_a_group_needs_per_layer(fresh_keras, small_data):
    keras = fresh_keras
    model = zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(32, 32, 3))
    schedule = {1: "conv_1", 2: "stage4"}  # conv_1 ends stage4; the rest of it comes later
    model.compile(transfer_optimizer(model, "adam"), "sparse_categorical_crossentropy")
    with pytest.raises(BuildArgumentError, match="per='layer'"):
        model.fit(
            *small_data, epochs=3, verbose=0, callbacks=[GradualUnfreezing(schedule, verbose=0)]
        )
    keras.backend.clear_session()
    model = zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(32, 32, 3))
    opt = transfer_optimizer(model, "adam", per="layer")
    model.compile(opt, "sparse_categorical_crossentropy")
    model.fit(
        *small_data,
        batch_size=16,
        epochs=3,
        verbose=0,
        callbacks=[GradualUnfreezing(schedule, verbose=0)],
    )
    assert int(opt._by_unit["conv_1"].iterations.numpy()) == 2
    assert int(opt._by_unit["expanded_conv_10_project"].iterations.numpy()) == 1


def test_a_variable_outside_the_model_names_the_fix(fresh_keras):
    import keras

    from zoo_transfer.errors import OptimizerMismatchError

    model = zoo_transfer.build("digitnet", 3, weights=None)
    optimizer = transfer_optimizer(model)
    optimizer.build(model.trainable_variables)
    stranger = keras.Variable(np.zeros(2, "float32"), name="stranger")
    with pytest.raises(OptimizerMismatchError, match="transfer_optimizer"):
        optimizer.apply([np.ones(2, "float32")], [stranger])
    assert not np.any(stranger.numpy())  # nothing was applied


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_state_paths_do_not_depend_on_the_optimizers_made_before(fresh_keras, policy):
    """Backups and `.keras` files restore optimizer state by path: a run resumed in the
    process that ran the first one (the Python API) must find the same paths, though
    Keras numbers unnamed optimizers per process ("adam", "adam_1", ...)."""
    import keras

    keras.mixed_precision.set_dtype_policy(policy)
    try:
        paths = []
        for _ in range(2):
            model = zoo_transfer.build("digitnet", 3, input_shape=(32, 32, 3))
            optimizer = zoo_transfer.transfer_optimizer(model, "adam", learning_rate=1e-3)
            paths.append(sorted(v.path for v in optimizer.variables))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert paths[0] == paths[1]
    assert any(p.startswith("adam_stage3/") for p in paths[0])
