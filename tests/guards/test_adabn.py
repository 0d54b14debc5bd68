"""AdaBN: each BatchNorm layer's moving statistics become those of its inputs on the
target images (the layers before it already adapted), and nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer import ArgumentError
from zoo_transfer.guards import adapt_batchnorm

BN_LAYERS = [
    "stem_bn",
    "stage1_block1_bn",
    "stage1_block2_bn",
    "stage2_block1_bn",
    "stage2_block2_bn",
    "stage3_block1_bn",
    "stage3_block2_bn",
]


def _inputs_of(model, name, images):
    """The inputs of backbone layer `name` on `images`, by a sub-model of the backbone fed
    with the preprocess layer's output: computed apart from adapt_batchnorm's readers."""
    import keras

    backbone = model.get_layer("digitnet")
    normalised = model.get_layer("preprocess")(keras.ops.convert_to_tensor(images))
    upto = keras.Model(backbone.inputs, backbone.get_layer(name).input)
    return np.asarray(upto(normalised, training=False), "float64")


def _stats(layer):
    return layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy()


@pytest.fixture
def shifted(digits):
    """The digits inverted (white on black becomes black on white): another domain."""
    return 255.0 - digits[0]


def test_each_layer_gets_the_statistics_of_its_inputs_after_the_earlier_ones(
    keras_session, shifted
):
    model = zoo_transfer.build("digitnet", 5)
    backbone = model.get_layer("digitnet")
    stats_before = {n: _stats(backbone.get_layer(n)) for n in BN_LAYERS}
    others = {w.path: w.numpy().copy() for w in model.weights if "moving_" not in w.path}
    predicted = model.predict(shifted, verbose=0)

    assert adapt_batchnorm(model, shifted, batch_size=16) == BN_LAYERS
    for name in BN_LAYERS:
        layer = backbone.get_layer(name)
        x = _inputs_of(model, name, shifted)  # through the adapted layers before it
        mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-5, atol=1e-6)
        assert not np.allclose(layer.moving_mean.numpy(), stats_before[name][0], atol=1e-3)
        # in inference mode the layer now centres these images: its output's mean is beta
        out = np.asarray(layer(x.astype("float32"), training=False), "float64")
        np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), layer.beta.numpy(), atol=1e-4)
    for w in model.weights:
        if "moving_" not in w.path:
            np.testing.assert_array_equal(w.numpy(), others[w.path], err_msg=w.path)
    assert np.abs(model.predict(shifted, verbose=0) - predicted).max() > 0.05


def test_every_kind_of_data_gives_the_same_statistics(keras_session, shifted, digits):
    """Arrays, a dataset, and a Splits with heavy augmentation read in order, without it;
    `batches` reads only the first ones."""
    import tensorflow as tf

    from zoo_transfer.data import load

    labels = digits[1]
    results = {}
    sources = {
        "images": (shifted, {}),
        "pairs": ((shifted, labels), {}),
        "dataset": (tf.data.Dataset.from_tensor_slices((shifted, labels)).batch(16), {}),
        "splits": (load((shifted.astype("uint8"), labels), batch_size=16, augment="heavy",
                        image_size=32), {}),
        "first two batches": (shifted, {"batches": 2}),
        "first 32 images": (shifted[:32], {}),
    }  # fmt: skip
    for kind, (data, kwargs) in sources.items():
        model = zoo_transfer.build("digitnet", 5)
        adapt_batchnorm(model, data, batch_size=16, **kwargs)
        results[kind] = [_stats(model.get_layer("digitnet").get_layer(n)) for n in BN_LAYERS]
    for kind in ("pairs", "dataset", "splits"):
        for (m, v), (m0, v0) in zip(results[kind], results["images"], strict=True):
            np.testing.assert_allclose(m, m0, rtol=1e-5, atol=1e-6, err_msg=kind)
            np.testing.assert_allclose(v, v0, rtol=1e-5, atol=1e-6, err_msg=kind)
    for (m, v), (m0, v0) in zip(results["first two batches"], results["first 32 images"],
                                strict=True):  # fmt: skip
        np.testing.assert_allclose(m, m0, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(v, v0, rtol=1e-5, atol=1e-6)
    assert not np.allclose(results["first two batches"][-1][0], results["images"][-1][0])


def test_parallel_branches_share_a_round_and_stay_exact(keras_session):
    """Two BatchNorm layers side by side and one after both: two rounds, exact statistics."""
    import keras

    from zoo_transfer.guards.adabn import _batchnorm_layers, _generations

    inputs = keras.Input((8, 8, 3))
    a = keras.layers.BatchNormalization(name="bn_a")(keras.layers.Conv2D(4, 3, name="ca")(inputs))
    b = keras.layers.BatchNormalization(name="bn_b")(keras.layers.Conv2D(4, 3, name="cb")(inputs))
    joined = keras.layers.Conv2D(4, 1, name="cj")(keras.layers.Concatenate()([a, b]))
    out = keras.layers.BatchNormalization(name="bn_j")(joined)
    model = keras.Model(inputs, out)
    rounds = _generations(_batchnorm_layers(model))
    assert [[layer.name for layer, _ in r] for r in rounds] == [["bn_a", "bn_b"], ["bn_j"]]

    x = np.random.default_rng(0).normal(3.0, 2.0, (20, 8, 8, 3)).astype("float32")
    adapt_batchnorm(model, x, batch_size=7)
    for name in ("bn_a", "bn_b", "bn_j"):
        layer = model.get_layer(name)
        seen = np.asarray(keras.Model(inputs, layer.input)(x, training=False), "float64")
        np.testing.assert_allclose(layer.moving_mean.numpy(), seen.mean((0, 1, 2)), rtol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy(), seen.var((0, 1, 2)), rtol=1e-5)


def test_what_it_cannot_adapt_is_refused(keras_session, shifted):
    import keras

    model = zoo_transfer.build("digitnet", 5)
    with pytest.raises(ArgumentError, match="Received: batches=0"):
        adapt_batchnorm(model, shifted, batches=0)
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="no_bn")
    with pytest.raises(ArgumentError, match="'no_bn' has no BatchNormalization layer"):
        adapt_batchnorm(plain, np.zeros((2, 4)))
    with pytest.raises(zoo_transfer.ZooTransferError, match="Received: dict"):
        adapt_batchnorm(model, {"images": shifted})


def test_a_bn_heavy_pretrained_network(keras_session, shared_data):
    """MobileNet 0.25 (27 BatchNorm layers, ImageNet weights): all adapted, in order, the
    last one's statistics those of its inputs after the 26 before it."""
    import keras

    from zoo_transfer.recipes.stages import find_backbone

    weights = shared_data / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"
    model = zoo_transfer.build("mobilenet.a025_224", 3, weights=str(weights))
    x = np.random.default_rng(0).uniform(0, 255, (6, 224, 224, 3)).astype("float32")
    names = adapt_batchnorm(model, x, batch_size=3)
    backbone, _ = find_backbone(model)
    bns = [ly.name for ly in backbone.layers if isinstance(ly, keras.layers.BatchNormalization)]
    assert names == bns and len(names) == 27
    last = backbone.get_layer(names[-1])
    normalised = model.get_layer("preprocess")(keras.ops.convert_to_tensor(x))
    seen = np.asarray(keras.Model(backbone.inputs, last.input)(normalised, training=False))
    seen = seen.astype("float64")
    np.testing.assert_allclose(last.moving_mean.numpy(), seen.mean((0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(last.moving_variance.numpy(), seen.var((0, 1, 2)), rtol=1e-4)
