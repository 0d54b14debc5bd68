"""`build(..., head_stages=n)`: a head that reads several stages' pooled features."""

from __future__ import annotations

import numpy as np
import pytest

from zoo_transfer.errors import BuildArgumentError


def _images(n=4, side=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, side, side, 3)).astype("float32")


def test_the_head_concatenates_each_stage_pooled(fresh_keras):
    import zoo_transfer
    from zoo_transfer.registry import get_card

    card = get_card("digitnet")
    model = zoo_transfer.build("digitnet", 5, head_stages=3)
    names = [layer.name for layer in model.layers]
    stages = list(card.stage_names)[-3:]
    assert [n for n in names if n.startswith("head_pool")] == [
        *(f"head_pool_{s}" for s in stages[:-1]),
        "head_pool",
    ]
    fx = zoo_transfer.feature_extractor("digitnet", cuts=stages)
    x = _images()
    maps = fx(x)
    pooled = np.concatenate([np.asarray(maps[s]).mean(axis=(1, 2)) for s in stages], axis=1)
    concat = model.get_layer("head_concat").output
    width = int(concat.shape[-1])
    assert width == pooled.shape[1] == model.get_layer("head_logits").kernel.shape[0]

    # the model's output is the head applied to exactly those pooled features
    logits = model.get_layer("head_logits")
    expected = fresh_keras.ops.softmax(logits(pooled))
    np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-5)
    # named stages give the same head; the backbone stays frozen
    named = zoo_transfer.build("digitnet", 5, head_stages=stages)
    assert [layer.name for layer in named.layers] == names
    assert not model.get_layer("digitnet").trainable_weights


def test_avgmax_pools_every_map_both_ways(fresh_keras):
    import zoo_transfer
    from zoo_transfer.features import split_head
    from zoo_transfer.registry import get_card

    stages = list(get_card("digitnet").stage_names)[-2:]
    model = zoo_transfer.build("digitnet", 5, head_stages=2, pooling="avgmax")
    names = [layer.name for layer in model.layers if layer.name.startswith("head_")]
    assert names == [f"head_pool_{stages[0]}", f"head_maxpool_{stages[0]}", "head_pool",
                     "head_maxpool", "head_concat", "head_logits", "head_output"]  # fmt: skip
    x = _images()
    maps = zoo_transfer.feature_extractor("digitnet", cuts=stages)(x)
    expected = np.concatenate(
        [f(np.asarray(maps[s]), axis=(1, 2)) for s in stages for f in (np.mean, np.max)], axis=1
    )
    trunk, head = split_head(model)
    np.testing.assert_allclose(trunk(x), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head(trunk(x)), model(x), rtol=1e-6, atol=1e-7)
    single = zoo_transfer.build("digitnet", 5, pooling="avgmax")  # one map, both ways
    assert int(split_head(single)[0].outputs[0].shape[-1]) == 2 * int(maps[stages[-1]].shape[-1])


def test_split_head_cuts_after_the_merge_and_the_probe_fits_it(fresh_keras):
    import zoo_transfer
    from zoo_transfer.features import split_head
    from zoo_transfer.linear_head import fit_linear_head
    from zoo_transfer.recipes.digitnet import demo_digits

    model = zoo_transfer.build("digitnet", 5, head_stages=3)
    trunk, head = split_head(model)
    width = int(model.get_layer("head_concat").output.shape[-1])
    assert tuple(trunk.outputs[0].shape) == (None, width)
    x = _images()
    np.testing.assert_allclose(head(trunk(x)), model(x), rtol=1e-5, atol=1e-6)

    xt, yt, xv, yv, _ = demo_digits(seed=0, train_per_class=10)
    one = zoo_transfer.build("digitnet", 5)
    many = zoo_transfer.build("digitnet", 5, head_stages=3)
    r1 = fit_linear_head(one, (xt, yt), (xv, yv))
    r3 = fit_linear_head(many, (xt, yt), (xv, yv))
    assert r1.val_accuracy > 0.5 and r3.val_accuracy > 0.5
    # the fitted head is the model's: its accuracy on the validation images is the probe's
    predicted = np.asarray(many.predict(xv, verbose=0)).argmax(axis=1)
    assert np.mean(predicted == yv) == pytest.approx(r3.val_accuracy, abs=1e-6)

    # the cached-feature trainer caches the joined, pooled features and trains the head
    from zoo_transfer.training import fit_transfer

    before = many.get_layer("head_logits").kernel.numpy().copy()
    many.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = fit_transfer(many, (xt, yt), (xv, yv), epochs=1, verbose=0)
    assert history.cached
    assert not np.array_equal(before, many.get_layer("head_logits").kernel.numpy())


def test_it_saves_and_loads_with_the_same_outputs(fresh_keras, tmp_path):
    import zoo_transfer

    model = zoo_transfer.build("digitnet", 5, head_stages=2)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = fresh_keras.saving.load_model(path, safe_mode=True)
    x = _images()
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"head_stages": 0}, ">= 1"),
        ({"head_stages": ["stage9"]}, "stage9"),
        ({"head_stages": 2, "pooling": "flatten"}, "pooling='avg'"),
        ({"head_stages": "2"}, "int >= 1 or a list"),
        ({"head_stages": 2, "num_classes": None}, "num_classes"),
    ],
)
def test_bad_head_stages_say_what_to_pass(fresh_keras, kwargs, match):
    import zoo_transfer

    num_classes = kwargs.pop("num_classes", 5)
    with pytest.raises(BuildArgumentError, match=match):
        zoo_transfer.build("digitnet", num_classes, **kwargs)
