"""`build`: cut, freeze, head, names, raw input, precision, and its argument errors."""

from __future__ import annotations

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer import BuildArgumentError
from zoo_transfer.registry import get_card


def _snapshot(variables):
    return [np.array(v.numpy(), copy=True) for v in variables]


def test_resnet50_new_head_trains_only_the_head(fresh_keras):
    model = zoo_transfer.build("resnet50", num_classes=5, weights=None)
    assert model.output_shape == (None, 5)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 2048 * 5 + 5
    backbone = model.get_layer("resnet50")
    bn_stats = [w for w in backbone.weights if "moving" in w.path]
    assert bn_stats, "ResNet50 has BatchNorm moving statistics"
    before_backbone = _snapshot(backbone.weights)
    before_head = _snapshot(model.get_layer("head_logits").weights)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 224, 224, 3)).astype("float32")
    y = rng.integers(0, 5, 8)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    for a, w in zip(before_backbone, backbone.weights, strict=True):
        np.testing.assert_array_equal(a, w.numpy(), err_msg=w.path)
    after_head = model.get_layer("head_logits").weights
    assert all(
        not np.array_equal(a, w.numpy()) for a, w in zip(before_head, after_head, strict=True)
    )


def test_names_cut_and_trainable_from(fresh_keras):
    model = zoo_transfer.build(
        "mobilenet_v3_small",
        num_classes=3,
        weights=None,
        input_shape=(64, 64, 3),
        cut="stage3",
        trainable_from="stage3",
        head=(16,),
        dropout=0.2,
    )
    names = [layer.name for layer in model.layers]
    assert names[:2] == ["image", "mobilenet_v3_small"]  # builtin normalisation: no layer
    assert all(n.startswith("head_") for n in names[2:])
    backbone = model.get_layer("mobilenet_v3_small")
    card = get_card("mobilenet_v3_small")
    assert backbone.output.shape[1:] == (4, 4, card.stage("stage3").channels)
    trainable = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert "expanded_conv_7_project" in trainable  # in stage3
    assert "expanded_conv_2_project" not in trainable  # stage2: frozen
    assert "conv" not in trainable  # stem: frozen
    assert "conv_1" not in [layer.name for layer in backbone.layers]  # cut away


def test_stage_index_and_layer_name_cuts(fresh_keras):
    a = zoo_transfer.build("resnet50", 2, weights=None, cut=2, input_shape=(64, 64, 3))
    b = zoo_transfer.build(
        "resnet50", 2, weights=None, cut="conv3_block4_out", input_shape=(64, 64, 3)
    )
    assert a.get_layer("resnet50").output.shape == b.get_layer("resnet50").output.shape
    assert a.get_layer("resnet50").output.shape[1:] == (8, 8, 512)


def test_normalisation_inside_matches_the_card(fresh_keras):
    keras = fresh_keras
    card = get_card("resnet50")
    model = zoo_transfer.build("resnet50", num_classes=2, weights=None, input_shape=(32, 32, 3))
    pre = keras.Model(model.input, model.get_layer("preprocess").output)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(pre(x)), card.preprocessing.normalize(x), atol=1e-4)
    # uint8 input works and gives the same answer
    np.testing.assert_allclose(
        model.predict(x.astype("uint8"), verbose=0),
        model.predict(x.astype("uint8").astype("float32"), verbose=0),
        atol=1e-6,
    )
    off = zoo_transfer.build(
        "resnet50",
        num_classes=2,
        weights=None,
        input_shape=(32, 32, 3),
        include_preprocessing=False,
    )
    assert "preprocess" not in [layer.name for layer in off.layers]


def test_any_size_and_activations(fresh_keras):
    model = zoo_transfer.build("mobilenet_v3_small", 1, weights=None, input_shape=(None, None, 3))
    assert model.get_layer("head_output").get_config()["activation"] == "sigmoid"
    for size in (48, 80):
        out = model.predict(np.zeros((1, size, size, 3), "float32"), verbose=0)
        assert out.shape == (1, 1) and 0 < out[0, 0] < 1
    logits = zoo_transfer.build(
        "mobilenet_v3_small",
        4,
        weights=None,
        input_shape=(32, 32, 3),
        classifier_activation=None,
        pooling="max",
    )
    assert logits.get_layer("head_output").get_config()["activation"] == "linear"
    assert type(logits.get_layer("head_pool")).__name__ == "GlobalMaxPooling2D"


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_output_is_float32(fresh_keras, policy):
    keras = fresh_keras
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        new = zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(32, 32, 3))
        kept = zoo_transfer.build("mobilenet_v3_small", weights=None)
        assert new.output.dtype == "float32" and kept.output.dtype == "float32"
        assert new.get_layer("mobilenet_v3_small").layers[3].compute_dtype != "float32"
        out = new.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
        assert out.dtype == np.float32
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_jit_compile_fit(fresh_keras):
    model = zoo_transfer.build("mobilenet_v3_small", 2, weights=None, input_shape=(32, 32, 3))
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    history = model.fit(
        np.zeros((8, 32, 32, 3), "float32"), np.zeros(8, "int32"), batch_size=4, epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 0}, "positive int"),
        ({"num_classes": 2, "cut": "stage9"}, "Unknown cut 'stage9'.*stage1"),
        ({"num_classes": 2, "cut": "no_such_layer"}, "Unknown cut 'no_such_layer'"),
        ({"num_classes": 2, "input_shape": (16, 16, 3)}, "at least 32x32"),
        ({"num_classes": 2, "input_shape": (64, 64, 1)}, "grayscale to RGB"),
        ({"num_classes": 2, "pooling": "mean"}, "pooling"),
        ({"num_classes": 2, "trainable_from": "stage7"}, "Unknown `trainable_from`"),
        ({"cut": "stage2"}, "needs `num_classes`"),
        ({"num_classes": 2, "weights": "/no/such/file.h5"}, "does not exist"),
    ],
)
def test_bad_arguments_name_the_value_and_the_fix(fresh_keras, kwargs, message):
    with pytest.raises(BuildArgumentError, match=message):
        zoo_transfer.build("resnet50", **{"weights": None, **kwargs})


def test_feature_extractor_named_outputs(fresh_keras):
    fx = zoo_transfer.feature_extractor(
        "resnet50", cuts=["stage2", "stage4", 1], weights=None, input_shape=(64, 64, 3)
    )
    out = fx(np.zeros((1, 64, 64, 3), "float32"))
    assert set(out) == {"stage2", "stage4", "stage1"}
    assert tuple(out["stage2"].shape) == (1, 8, 8, 512)
    assert tuple(out["stage4"].shape) == (1, 2, 2, 2048)
    assert not fx.trainable_weights


@pytest.mark.parametrize("bn", ["frozen", "train"])
def test_batchnorm_of_trainable_stages(fresh_keras, bn):
    """Keras 3 ignores `training=False` on a nested call; BN must be frozen itself."""
    model = zoo_transfer.build(
        "mobilenet_v3_small",
        3,
        weights=None,
        input_shape=(32, 32, 3),
        trainable_from="stage4",
        bn=bn,
    )
    layer = model.get_layer("mobilenet_v3_small").get_layer("conv_1_bn")
    start = layer.moving_mean.numpy().copy()
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(
        rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32"),
        rng.integers(0, 3, 16),
        batch_size=8,
        epochs=1,
        verbose=0,
    )
    moved = not np.array_equal(start, layer.moving_mean.numpy())
    assert moved == (bn == "train")
    assert model.get_layer("mobilenet_v3_small").get_layer("conv_1").trainable
