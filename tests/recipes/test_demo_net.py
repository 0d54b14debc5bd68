"""DigitNet, the package-shipped demo backbone, and its offline digits transfer task."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer import BuildArgumentError
from zoo_transfer.recipes.digitnet import (
    WEIGHTS_HASH,
    DigitNet,
    demo_digits,
    digits_to_rgb,
    load_digits,
)

WEIGHTS = Path(zoo_transfer.__file__).parent / "assets" / "digitnet_digits04.weights.h5"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, and an empty Keras cache in tmp."""

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


def test_shipped_digits():
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 16
    np.testing.assert_array_equal(
        np.bincount(labels), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    )


def test_upscaling_is_bilinear_gray_rgb():
    flat = np.full((1, 8, 8), 16)
    np.testing.assert_array_equal(digits_to_rgb(flat, 32), np.full((1, 32, 32, 3), 255))
    step = np.zeros((1, 8, 8))
    step[:, :, 4:] = 16
    row = digits_to_rgb(step, 16)[0, 0, :, 0]
    assert row[:7].max() == 0 and row[9:].min() == 255  # sharp far from the edge
    assert 0 < row[7] < row[8] < 255  # interpolated across it
    assert (digits_to_rgb(step)[..., 0] == digits_to_rgb(step)[..., 2]).all()


def test_demo_digits_split():
    x, y, xt, yt, names = demo_digits(seed=0, train_per_class=12)
    assert names == ("5", "6", "7", "8", "9")
    assert x.shape == (60, 32, 32, 3) and x.dtype == np.uint8 and x.max() > 200
    np.testing.assert_array_equal(np.bincount(y), [12] * 5)
    np.testing.assert_array_equal(np.bincount(yt), np.array([182, 181, 179, 174, 180]) - 12)
    again = demo_digits(seed=0, train_per_class=12)
    np.testing.assert_array_equal(x, again[0])
    np.testing.assert_array_equal(yt, again[3])
    other = demo_digits(seed=1, train_per_class=12)
    assert not np.array_equal(x, other[0])
    # train and test are disjoint: no training image reappears among the test images
    train_keys = {img.tobytes() for img in x}
    assert sum(img.tobytes() in train_keys for img in xt) <= 1  # the data has near-duplicates
    with pytest.raises(BuildArgumentError, match="train_per_class=500"):
        demo_digits(train_per_class=500)


def test_architecture_names_shapes_and_params(fresh_keras):
    model = DigitNet(weights=None)
    assert model.output.shape == (None, 5)
    assert model.get_layer("stage3_out").output.shape == (None, 2, 2, 64)
    assert model.count_params() == 75445
    small = DigitNet(include_top=False, weights=None, input_shape=(16, 16, 3))
    assert small.output.shape == (None, 1, 1, 64)
    pooled = DigitNet(include_top=False, weights=None, input_shape=(None, None, 3), pooling="max")
    assert pooled.output.shape == (None, 64) and pooled.layers[-1].name == "max_pool"
    logits = DigitNet(weights=None, classes=3, classifier_activation=None)
    assert logits.get_layer("predictions").activation.__name__ == "linear"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": "nowhere.h5"}, "weights='nowhere.h5'"),
        ({"input_shape": (8, 8, 3)}, "input_shape=\\(8, 8, 3\\)"),
        ({"input_shape": (32, 32, 1)}, "input_shape=\\(32, 32, 1\\)"),
        ({"pooling": "mean", "include_top": False}, "pooling='mean'"),
        ({"weights": "imagenet", "classes": 10}, "classes=10"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(BuildArgumentError, match=match):
        DigitNet(**kwargs)


def _file_weights(fresh_keras):
    reference = DigitNet(weights=None)
    reference.load_weights(str(WEIGHTS))
    return reference


def test_build_loads_the_shipped_weights_offline(fresh_keras, offline):
    reference = _file_weights(fresh_keras)
    start = time.monotonic()
    model = zoo_transfer.build("digitnet", num_classes=5)
    assert time.monotonic() - start < 10
    backbone = model.get_layer("digitnet")
    assert not backbone.trainable
    compared = 0
    for layer in backbone.layers:
        for got, want in zip(
            layer.get_weights(), _layer_weights(reference, layer.name), strict=True
        ):
            np.testing.assert_array_equal(got, want)
            compared += 1
    assert compared == 7 * 5  # stem + 6 blocks: conv kernel and 4 BatchNorm arrays each
    random = zoo_transfer.build("digitnet", num_classes=5, weights=None)
    kernel = random.get_layer("digitnet").get_layer("stem_conv").kernel.numpy()
    assert not np.allclose(kernel, reference.get_layer("stem_conv").kernel.numpy())


def _layer_weights(model, name):
    return model.get_layer(name).get_weights()


def test_constructor_weights_with_and_without_top(fresh_keras, offline):
    reference = _file_weights(fresh_keras)
    top = DigitNet(weights="imagenet")
    no_top = DigitNet(include_top=False, weights="imagenet", input_shape=(None, None, 3))
    for layer in no_top.layers:
        for a, b in zip(layer.get_weights(), _layer_weights(reference, layer.name), strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        top.get_layer("predictions").kernel.numpy(),
        reference.get_layer("predictions").kernel.numpy(),
    )
    import hashlib

    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == WEIGHTS_HASH


def _ncm_accuracy(features, labels, test_features, test_labels):
    means = np.stack([features[labels == c].mean(0) for c in range(5)])
    dist = ((test_features[:, None, :] - means[None]) ** 2).sum(-1)
    return float((dist.argmin(1) == test_labels).mean())


def test_pretrained_features_separate_unseen_digits(fresh_keras, offline):
    """Nearest-class-mean on frozen, pooled stage-3 features of digits 5-9."""
    x, y, xt, yt, _ = demo_digits(seed=0, train_per_class=15)
    scores = {}
    for weights in ("imagenet", None):
        fresh_keras.utils.set_random_seed(0)
        fx = zoo_transfer.feature_extractor("digitnet", cuts=["stage3"], weights=weights)
        f, ft = (np.asarray(fx.predict(a, verbose=0)["stage3"]).mean((1, 2)) for a in (x, xt))
        scores[weights] = _ncm_accuracy(f, y, ft, yt)
    assert scores["imagenet"] >= 0.85
    assert scores["imagenet"] >= scores[None] + 0.1, scores


def _fit_and_score(fresh_keras, model, lr, data, epochs):
    x, y, xt, yt, _ = data
    fresh_keras.utils.set_random_seed(0)
    model.compile(
        fresh_keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    return model.evaluate(xt, yt, verbose=0)[1]


def test_transfer_beats_training_from_scratch(fresh_keras, offline):
    """Same data (10 images per digit 5-9) and budget (3 epochs): frozen pretrained
    backbone + new head vs the same network from scratch, all trainable, at its better
    learning rate. (With many more epochs scratch catches up: 8x8 digits are easy.)"""
    data = demo_digits(seed=0, train_per_class=10)
    start = time.monotonic()
    fresh_keras.utils.set_random_seed(0)
    transfer = _fit_and_score(
        fresh_keras, zoo_transfer.build("digitnet", num_classes=5), 3e-2, data, epochs=3
    )
    scratch = []
    for lr in (3e-3, 1e-2):
        fresh_keras.utils.set_random_seed(0)
        model = zoo_transfer.build(
            "digitnet", num_classes=5, weights=None, trainable_from="stem", bn="train"
        )
        assert all(layer.trainable for layer in model.get_layer("digitnet").layers)
        scratch.append(_fit_and_score(fresh_keras, model, lr, data, epochs=3))
    elapsed = time.monotonic() - start
    print(f"transfer {transfer:.3f}, scratch {scratch}, {elapsed:.1f} s")
    assert transfer >= 0.8
    assert transfer >= max(scratch) + 0.05, (transfer, scratch)
    assert elapsed < 60
