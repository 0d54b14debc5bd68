"""`fine_tune` (frozen head epochs, then discriminative unfreezing) and `lr_find`."""

from __future__ import annotations

import numpy as np
import pytest

import zoo_transfer


def test_fine_tune_freezes_then_unfreezes_in_one_history(small_model, small_data):
    model = small_model
    backbone = model.get_layer("mobilenet_v3_small")
    stem = backbone.get_layer("conv")
    start = stem.kernel.numpy().copy()
    snapshots = []
    import keras

    class Snap(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(stem.kernel.numpy().copy())

    x, y = small_data
    import tensorflow as tf

    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    history = zoo_transfer.fine_tune(
        model, train, epochs=2, freeze_epochs=1, base_lr=1e-2, callbacks=[Snap()], verbose=0
    )
    assert len(history.history["loss"]) == 3
    np.testing.assert_array_equal(snapshots[0], start)  # frozen during the head epoch
    assert not np.array_equal(snapshots[2], start)  # the stem trains afterwards
    params = history.history["trainable_params"]
    assert params[0] < params[1] == params[2]
    opt = model.optimizer
    lr_stem = float(opt._by_unit["stem"].learning_rate.numpy())
    lr_head = float(opt._by_unit["head"].learning_rate.numpy())
    assert lr_head == pytest.approx(1e-2) and lr_stem == pytest.approx(1e-4)


def test_lr_find_leaves_the_model_alone_and_suggests_a_rate(small_model, small_data, tmp_path):
    model = small_model
    model.compile("adam", "sparse_categorical_crossentropy")
    before = [w.numpy().copy() for w in model.weights]
    result = zoo_transfer.lr_find(model, small_data, steps=30, start_lr=1e-6, end_lr=1.0)
    for a, w in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(a, w.numpy())
    assert 1e-6 <= result.suggestion <= 1.0
    assert len(result.learning_rates) == len(result.losses) <= 30
    assert result.learning_rates == sorted(result.learning_rates)
    result.plot(str(tmp_path / "lr.png"))
    assert (tmp_path / "lr.png").stat().st_size > 1000
