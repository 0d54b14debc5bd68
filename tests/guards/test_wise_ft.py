"""WiSE-FT: the weights as an exact mix of the reference and the fine-tuned model, every
kind of reference, mismatches named, and a sweep that finds a known best alpha."""

from __future__ import annotations

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer import ArgumentError, WeightsMismatchError
from zoo_transfer.guards import wise_ft, wise_ft_sweep


def _pair(keras):
    """A digitnet model (the reference) and a copy with every float weight changed, the
    BatchNorm moving statistics included (the "fine-tuned" model)."""
    keras.utils.set_random_seed(0)
    reference = zoo_transfer.build("digitnet", 5)
    tuned = zoo_transfer.build("digitnet", 5)
    rng = np.random.default_rng(1)
    for r, t in zip(reference.weights, tuned.weights, strict=True):
        value = r.numpy()
        t.assign(value + rng.uniform(0.1, 0.5, value.shape).astype(value.dtype))
    return reference, tuned


def _as(kind, reference, tmp_path):
    if kind == "model":
        return reference
    if kind == "path":
        reference.save(tmp_path / "reference.keras")
        return str(tmp_path / "reference.keras")
    return reference.get_weights()


@pytest.mark.parametrize("kind", ["model", "path", "weights"])
def test_alpha_one_zero_and_a_half_give_tuned_reference_and_midpoint(keras_session, tmp_path, kind):
    reference, tuned = _pair(keras_session)
    ref = [w.copy() for w in reference.get_weights()]
    fine = [w.copy() for w in tuned.get_weights()]
    given = _as(kind, reference, tmp_path)

    assert wise_ft(tuned, 1.0, reference=given) is tuned  # in place
    for a, b in zip(tuned.get_weights(), fine, strict=True):
        np.testing.assert_array_equal(a, b)
    wise_ft(tuned, 0.0, reference=given)
    for a, b in zip(tuned.get_weights(), ref, strict=True):
        np.testing.assert_array_equal(a, b)

    tuned.set_weights(fine)
    wise_ft(tuned, 0.5, reference=given)
    for var, r, f in zip(tuned.weights, ref, fine, strict=True):
        midpoint = ((r.astype("float64") + f.astype("float64")) / 2).astype(r.dtype)
        np.testing.assert_array_equal(var.numpy(), midpoint, err_msg=var.path)
    stats = tuned.get_layer("digitnet").get_layer("stage2_block1_bn").moving_variance
    i = [w.path for w in tuned.weights].index(stats.path)
    assert not np.array_equal(ref[i], fine[i])  # BatchNorm statistics are mixed too
    np.testing.assert_allclose(stats.numpy(), (ref[i] + fine[i]) / 2, rtol=1e-6)


@pytest.mark.parametrize(
    "build_kwargs, named",
    [
        ({"num_classes": 4}, r"layer 'head_logits': head_logits/kernel has shape \(64, 5\)"),
        ({"num_classes": 5, "head": [8]}, r"layer 'head_logits'.*\(head_dense_1/kernel\)"),
        ({"num_classes": 5, "cut": "stage2"}, r"layer 'stage3_block1_conv'"),
    ],
)
def test_a_reference_of_another_architecture_names_the_first_layer_that_differs(
    keras_session, build_kwargs, named
):
    _, tuned = _pair(keras_session)
    before = [w.copy() for w in tuned.get_weights()]
    other = zoo_transfer.build("digitnet", **build_kwargs)
    with pytest.raises(WeightsMismatchError, match=named):
        wise_ft(tuned, 0.5, reference=other)
    with pytest.raises(WeightsMismatchError, match=named.split("'")[1]):
        wise_ft(tuned, 0.5, reference=other.get_weights())
    for a, b in zip(tuned.get_weights(), before, strict=True):  # nothing was changed
        np.testing.assert_array_equal(a, b)


def test_a_reference_with_fewer_weights_or_no_file_is_refused(keras_session, tmp_path):
    reference, tuned = _pair(keras_session)
    with pytest.raises(WeightsMismatchError, match="reference has only 38 weights"):
        wise_ft(tuned, 0.5, reference=reference.get_weights()[:-1])
    with pytest.raises(zoo_transfer.ZooTransferError, match="does not exist"):
        wise_ft(tuned, 0.5, reference=tmp_path / "missing.keras")
    with pytest.raises(ArgumentError, match="Received: reference of type dict"):
        wise_ft(tuned, 0.5, reference={"weights": 1})


def test_a_bad_alpha_is_refused_naming_it(keras_session):
    reference, tuned = _pair(keras_session)
    for alpha in (1.5, -0.1, float("nan"), "0.5", None, True):
        with pytest.raises(ArgumentError, match=r"`alpha` to be a number in \[0, 1\]"):
            wise_ft(tuned, alpha, reference=reference)
        with pytest.raises(ArgumentError, match="Received: alphas="):
            wise_ft_sweep(tuned, reference, (np.zeros((1, 32, 32, 3)), [0]), alphas=(0.5, alpha))


# ---------------------------------------------------------------- the sweep
def _linear(keras, kernel):
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(2, activation="softmax", name="logits")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.asarray(kernel, "float32"), np.zeros(2, "float32")])
    return model


def test_the_sweep_finds_the_midpoint_when_only_the_midpoint_classifies(keras_session):
    """Class 0 when x0 > 0. Reference and fine-tuned model lean on x1, one each way, so
    only their mean ignores it: alpha 0.5 is right everywhere, every other alpha is not."""
    keras = keras_session
    good = np.array([[1.0, -1.0], [0.0, 0.0]])
    lean = np.array([[0.0, 0.0], [3.0, -3.0]])
    reference, tuned = _linear(keras, good + lean), _linear(keras, good - lean)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (400, 2)).astype("float32")
    y = (x[:, 0] <= 0).astype(int)

    sweep = wise_ft_sweep(tuned, reference, (x, y))
    assert sweep.alphas == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert sweep.best_alpha == 0.5 and sweep.best_accuracy == 1.0
    others = [acc for a, acc in zip(sweep.alphas, sweep.accuracies, strict=True) if a != 0.5]
    assert max(others) < 0.9, sweep
    np.testing.assert_allclose(tuned.get_weights()[0], good, atol=1e-7)  # left at the best

    # a batched tf.data.Dataset with one-hot labels scores the same
    import tensorflow as tf

    tuned.set_weights([(good - lean).astype("float32"), np.zeros(2, "float32")])
    onehot = tf.data.Dataset.from_tensor_slices((x, np.eye(2)[y])).batch(64)
    again = wise_ft_sweep(tuned, reference, onehot, alphas=(1.0, 0.75, 0.5))
    assert again.accuracies == tuple(reversed(sweep.accuracies[2:]))
    assert again.to_json()["alpha"] == 0.5


def test_equal_scores_choose_the_alpha_nearest_a_half(keras_session):
    keras = keras_session
    model = _linear(keras, [[1.0, -1.0], [0.0, 0.0]])
    x = np.array([[1.0, 0.0], [-1.0, 0.0]], "float32")
    sweep = wise_ft_sweep(model, model.get_weights(), (x, np.array([0, 1])), alphas=(0, 1, 0.75))
    assert sweep.accuracies == (1.0, 1.0, 1.0) and sweep.best_alpha == 0.75
