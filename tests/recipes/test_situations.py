"""The four transfer situations, `suggest`, and the small+similar recipe on real data."""

from __future__ import annotations

import numpy as np
import pytest

from zoo_transfer import BuildArgumentError, recipes
from zoo_transfer.registry import get_card
from zoo_transfer.training import fit_transfer


@pytest.mark.parametrize(
    ("num_images", "similar", "expected"),
    [
        (500, True, "small_similar"),
        (500, False, "small_different"),
        (50_000, True, "large_similar"),
        (50_000, False, "large_different"),
    ],
)
def test_suggest_follows_the_decision_table(num_images, similar, expected):
    assert recipes.suggest(num_images, similar).__name__ == expected


def test_suggest_rejects_nonsense():
    with pytest.raises(BuildArgumentError, match="num_images"):
        recipes.suggest(0, True)


def _trainable_layers(model, backbone_name):
    backbone = model.get_layer(backbone_name)
    return {layer.name for layer in backbone.layers if layer.trainable and layer.weights}


def test_each_recipe_builds_what_it_says(fresh_keras):
    card = get_card("mobilenet_v3_small")
    kw = {"weights": None, "input_shape": (64, 64, 3)}

    model, plan = recipes.small_similar("mobilenet_v3_small", 3, **kw)
    assert not _trainable_layers(model, "mobilenet_v3_small")
    assert plan.recipe == "small_similar" and plan.learning_rate == 1e-3

    model, plan = recipes.large_similar("mobilenet_v3_small", 3, **kw)
    backbone = model.get_layer("mobilenet_v3_small")
    assert backbone.output.shape[-1] == card.stage("stage4").channels
    assert {"conv", "expanded_conv_1_expand", "conv_1"} <= _trainable_layers(
        model, "mobilenet_v3_small"
    )  # the whole network, stem included
    assert plan.learning_rate <= 1e-4

    model, plan = recipes.small_different("mobilenet_v3_small", 3, **kw)
    backbone = model.get_layer("mobilenet_v3_small")
    assert backbone.output.shape[-1] == card.stage("stage3").channels
    assert not _trainable_layers(model, "mobilenet_v3_small")
    assert "head_dense_1" in [layer.name for layer in model.layers]

    model, plan = recipes.large_different("mobilenet_v3_small", 3, **kw)
    backbone = model.get_layer("mobilenet_v3_small")
    assert backbone.output.shape[-1] == card.stage("stage3").channels
    assert "expanded_conv_7_project" in _trainable_layers(model, "mobilenet_v3_small")
    # the plan is a plain object the user can change before compiling
    plan.learning_rate = 0.5
    plan.compile(model)
    assert float(model.optimizer.learning_rate.numpy()) == 0.5


def _load_fashion(folder, size):
    import tensorflow as tf

    images, labels = [], []
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    for index, name in enumerate(classes):
        for f in sorted((folder / name).glob("*.png")):
            img = tf.io.decode_png(tf.io.read_file(str(f)), channels=1)
            img = tf.image.grayscale_to_rgb(img)
            images.append(tf.image.resize(img, (size, size)).numpy())
            labels.append(index)
    return np.stack(images).astype("float32"), np.array(labels)


def test_small_similar_on_fashion_mnist_with_real_weights(fresh_keras, shared_data):
    keras = fresh_keras
    keras.utils.set_random_seed(0)
    data = shared_data / "fashion-mnist-small"
    x, y = _load_fashion(data / "train", 96)
    vx, vy = _load_fashion(data / "val", 96)
    weights = shared_data / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"
    model, plan = recipes.small_similar(
        "mobilenet.a025_224", 10, weights=str(weights), input_shape=(96, 96, 3)
    )
    plan.compile(model)
    # the plan's epochs through `fit_transfer`, as `zoo-transfer train` runs them: the
    # backbone is frozen and nothing augments, so the head trains on features computed
    # once (exact: tests/training/test_fit_transfer.py), not on 96 px images each epoch
    history = fit_transfer(model, (x, y), (vx, vy), plan=plan, verbose=0)
    assert getattr(history, "cached", False)
    assert len(history.history["val_accuracy"]) == plan.epochs
    _, accuracy = model.evaluate(vx, vy, verbose=0)
    print(f"small_similar fashion-mnist-small val accuracy: {accuracy:.3f}")
    assert accuracy >= 0.78, f"val accuracy {accuracy:.3f}"


def test_small_similar_plan_trains_the_head_on_cached_features(fresh_keras):
    """The small+similar plan takes the cached path when it is exact, and only then."""
    from zoo_transfer.recipes.digitnet import demo_digits

    x, y, x_val, y_val, _ = demo_digits(seed=0, train_per_class=8)
    fresh_keras.utils.set_random_seed(0)
    model, plan = recipes.small_similar("digitnet", 5)
    plan.compile(model)
    backbone = [w.numpy() for w in model.get_layer("digitnet").weights]
    history = fit_transfer(model, (x, y), (x_val, y_val), plan=plan, epochs=2, verbose=0)
    assert getattr(history, "cached", False)
    for before, after in zip(backbone, model.get_layer("digitnet").weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())  # the backbone never moved
    assert len(history.history["val_accuracy"]) == 2

    light = fit_transfer(model, (x, y), plan=plan, epochs=1, augment="light", verbose=0)
    assert not getattr(light, "cached", False)  # augmentation: the plain fit

    model, plan = recipes.large_similar("digitnet", 5)
    plan.compile(model)
    assert not fit_transfer(model, (x, y), plan=plan, epochs=1, verbose=0).cached


def test_suggest_cuts_different_data_where_it_is_told(fresh_keras):
    from zoo_transfer.recipes import RECIPES, suggest
    from zoo_transfer.recipes.stages import find_backbone

    assert suggest(50, True, cut="stage2") is RECIPES["small_similar"]  # similar: no cut
    chosen = suggest(50, False, cut="stage1")  # the default is the stage before the last
    assert chosen.__name__ == "small_different"
    model, plan = chosen("digitnet", 5, weights=None)
    backbone, _ = find_backbone(model)
    default, _ = suggest(50, False)("digitnet", 5, weights=None)
    assert backbone.output.name != find_backbone(default)[0].output.name
    assert backbone.output.shape[1] > find_backbone(default)[0].output.shape[1]  # earlier
    assert plan.recipe == "small_different"
    with pytest.raises(BuildArgumentError, match="stage name"):
        suggest(50, False, cut=3)
