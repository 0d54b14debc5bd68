"""TensorFlow.js folders and Teachable Machine exports, from the real files in shared/data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer import WeightsCorruptError
from zoo_transfer.recipes._tfjs import read_tfjs_weights


@pytest.fixture(scope="module")
def tfjs_dir(shared_data):
    return shared_data / "tfjs" / "mobilenet_v1_0.25_224"


@pytest.fixture(scope="module")
def tm_dir(shared_data):
    return shared_data / "teachable-machine" / "tm-my-image-model"


def test_tfjs_weights_load_by_layer_name(fresh_keras, tfjs_dir):
    arrays = read_tfjs_weights(tfjs_dir)
    assert sum(len(v) for v in arrays.values()) == 137
    model = zoo_transfer.build(
        "mobilenet.a025_224", num_classes=2, weights=str(tfjs_dir), input_shape=(128, 128, 3)
    )
    backbone = model.get_layer("mobilenet")
    np.testing.assert_array_equal(
        backbone.get_layer("conv1").kernel.numpy(), dict(arrays["conv1"])["kernel"]
    )
    dw = backbone.get_layer("conv_dw_5")
    np.testing.assert_array_equal(dw.kernel.numpy(), dict(arrays["conv_dw_5"])["kernel"])
    bn = backbone.get_layer("conv_pw_13_bn")
    np.testing.assert_array_equal(
        bn.moving_mean.numpy(), dict(arrays["conv_pw_13_bn"])["moving_mean"]
    )


def test_truncated_shard_is_refused(tmp_path, tfjs_dir):
    copy = tmp_path / "tfjs"
    shutil.copytree(tfjs_dir, copy)
    shard = copy / "group55-shard1of1"
    shard.write_bytes(shard.read_bytes()[:-8])
    with pytest.raises(WeightsCorruptError, match="truncated|missing"):
        read_tfjs_weights(copy)
    assert shard.exists()


def test_teachable_machine_export_becomes_a_keras_model(fresh_keras, tm_dir):
    tm = zoo_transfer.load_teachable_machine(tm_dir)
    assert tm.labels == ["1", "2", "3"]
    assert tm.card == "mobilenet_v2.a035_224"
    model = tm.model
    assert model.output_shape == (None, 3)
    arrays = read_tfjs_weights(tm_dir)
    trunk = model.get_layer("mobilenet_v2")
    loaded = 0
    for layer in trunk.layers:  # every trunk weight equals the tfjs file, bit for bit
        if layer.weights:
            expected = dict(arrays[layer.name])
            for v in layer.weights:
                np.testing.assert_array_equal(v.numpy(), expected[v.name])
                loaded += int(np.prod(v.shape))
    assert trunk.count_params() == loaded == 410_208  # Keras' 0.35 no-top count
    head = model.get_layer("head_dense_Dense10")
    np.testing.assert_array_equal(head.kernel.numpy(), dict(arrays["dense_Dense10"])["kernel"])
    x = np.random.default_rng(0).uniform(0, 255, (6, 224, 224, 3)).astype("float32")
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # it keeps training: the head moves, the frozen trunk does not
    before_trunk = [v.numpy().copy() for v in trunk.weights]
    before_head = head.kernel.numpy().copy()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, np.array([0, 1, 2, 0, 1, 2]), epochs=2, batch_size=3, verbose=0)
    assert not np.array_equal(before_head, head.kernel.numpy())
    for a, v in zip(before_trunk, trunk.weights, strict=True):
        np.testing.assert_array_equal(a, v.numpy())


def test_not_a_teachable_machine_folder(tmp_path):
    with pytest.raises(zoo_transfer.WeightsMismatchError, match="metadata.json"):
        zoo_transfer.load_teachable_machine(tmp_path)


def test_a_model_json_path_is_taken_as_its_folder(fresh_keras, tm_dir, tfjs_dir):
    by_file = zoo_transfer.load_teachable_machine(tm_dir / "model.json")
    by_folder = zoo_transfer.load_teachable_machine(tm_dir)
    assert by_file.labels == by_folder.labels and by_file.card == by_folder.card
    for a, b in zip(by_file.model.weights, by_folder.model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    model = zoo_transfer.build(
        "mobilenet.a025_224", 2, weights=str(tfjs_dir / "model.json"), input_shape=(128, 128, 3)
    )
    kernel = dict(read_tfjs_weights(tfjs_dir)["conv1"])["kernel"]
    np.testing.assert_array_equal(model.get_layer("mobilenet").get_layer("conv1").kernel, kernel)
