"""`fit_transfer`: the one place that decides between cached features and a plain `fit`."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from zoo_transfer.errors import ArgumentError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def digits():
    from zoo_transfer.recipes.digitnet import demo_digits

    x, y, x_val, y_val, _ = demo_digits(seed=0, train_per_class=8)
    return x, y, x_val, y_val


def _model(keras):
    import zoo_transfer

    keras.utils.set_random_seed(0)
    model = zoo_transfer.build("digitnet", 5)
    model.compile(
        zoo_transfer.transfer_optimizer(model, "adam", learning_rate=1e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def test_cached_exactly_when_nothing_before_the_head_changes(fresh_keras, digits, capsys):
    from zoo_transfer.callbacks import GradualUnfreezing
    from zoo_transfer.training import fit_transfer

    x, y, x_val, y_val = digits
    model = _model(fresh_keras)
    backbone = [w.numpy().copy() for w in model.get_layer("digitnet").weights]
    history = fit_transfer(model, (x, y), (x_val, y_val), epochs=2, batch_size=8, verbose=2)
    assert history.cached and history.cache_reason == ""
    assert "cached backbone features: on" in capsys.readouterr().out
    assert len(history.history["val_accuracy"]) == 2
    for before, after in zip(backbone, model.get_layer("digitnet").weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())

    unfreeze = fit_transfer(
        _model(fresh_keras), (x, y), epochs=2, verbose=0,
        callbacks=[GradualUnfreezing({1: "stage3"}, verbose=0)],
    )  # fmt: skip
    assert not unfreeze.cached and "unfreeze" in unfreeze.cache_reason
    light = fit_transfer(_model(fresh_keras), (x, y), epochs=1, augment="light", verbose=0)
    assert not light.cached and "augmentation 'light'" in light.cache_reason
    never = fit_transfer(_model(fresh_keras), (x, y), epochs=1, cache="never", verbose=0)
    assert not never.cached


def test_a_splits_brings_its_augmentation_and_validation(fresh_keras, digits):
    from zoo_transfer import data
    from zoo_transfer.training import fit_transfer

    x, y, x_val, y_val = digits
    for augment, cached in (("none", True), ("light", False)):
        splits = data.load(
            (x, y), image_size=32, batch_size=8, validation=(x_val, y_val), augment=augment
        )
        history = fit_transfer(_model(fresh_keras), splits, epochs=1, verbose=0)
        assert history.cached is cached
        assert len(history.history["val_accuracy"]) == 1  # the split's validation was used


def test_bad_choices_are_refused(fresh_keras, digits):
    from zoo_transfer.callbacks import GradualUnfreezing
    from zoo_transfer.training import fit_transfer

    x, y, _, _ = digits
    model = _model(fresh_keras)
    with pytest.raises(ArgumentError, match="cache to be one of auto, never, always"):
        fit_transfer(model, (x, y), epochs=1, cache="maybe")
    with pytest.raises(ArgumentError, match="cache='always'.*unfreeze"):
        fit_transfer(
            model, (x, y), epochs=1, cache="always",
            callbacks=[GradualUnfreezing({0: "stage3"}, verbose=0)],
        )  # fmt: skip
    with pytest.raises(ArgumentError, match="epochs as an int >= 1"):
        fit_transfer(model, (x, y))


def test_the_fit_step_is_composed_in_one_place():
    """No package module but `training.py` calls `fit_cached_head` or `Model.fit` (the
    cached trainer's own `head.fit` aside); the job, the plans and `fine_tune` call
    `fit_transfer`."""
    callers = []
    for folder in ("zoo_transfer", "recipes", "registry"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("fit", "fit_cached_head"):
                    owner = getattr(func, "value", None)
                    who = getattr(owner, "id", "") if owner is not None else ""
                    callers.append(f"{path.relative_to(ROOT)}:{who}.{name}")
    assert sorted(set(callers)) == [
        "zoo_transfer/cached.py:head.fit",
        "zoo_transfer/training.py:.fit_cached_head",
        "zoo_transfer/training.py:model.fit",
    ]
    job = (ROOT / "zoo_transfer" / "job" / "runner.py").read_text(encoding="utf-8")
    training = (ROOT / "zoo_transfer" / "training.py").read_text(encoding="utf-8")
    assert "fit_transfer(" in job and training.count("fit_transfer(") >= 2  # + fine_tune


def test_the_optimizer_is_built_eagerly_and_trains_as_keras_would(fresh_keras, digits):
    """`build_optimizer_now` (what `fit_transfer` calls before `fit`) makes the state Keras
    would make while tracing the first step: zeros over the trainable variables, and the
    same weights after an epoch. `transfer_optimizer`'s comes built over every variable
    that may ever train."""
    import zoo_transfer
    from zoo_transfer.optimizers import build_optimizer_now

    keras = fresh_keras
    x, y, _, _ = digits
    weights = []
    for eager in (True, False):
        keras.utils.set_random_seed(0)
        model = zoo_transfer.build("digitnet", 5, trainable_from="stage3")
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        if eager:
            build_optimizer_now(model)
            assert model.optimizer.built
            slots = [
                v for v in model.optimizer.variables if v.path.endswith(("_momentum", "_velocity"))
            ]
            assert len(slots) == 2 * len(model.trainable_variables)
            assert all(not np.any(keras.ops.convert_to_numpy(v)) for v in slots)
        else:
            assert not model.optimizer.built  # Keras builds it while tracing
        keras.utils.set_random_seed(1)
        model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        weights.append([keras.ops.convert_to_numpy(w) for w in model.weights])
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    model = _model(keras)
    assert model.optimizer.built and model.optimizer.covers(model)
