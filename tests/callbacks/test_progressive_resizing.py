"""ProgressiveResizing: every training batch has the scheduled size, one trace per size."""

from __future__ import annotations

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer import BuildArgumentError
from zoo_transfer.callbacks import ProgressiveResizing
from zoo_transfer.data import ResizableImages


def _probed_model(keras, seen, traces):
    import tensorflow as tf

    class Probe(keras.layers.Layer):
        def call(self, x):
            traces.append(1)  # Python runs once per trace

            def record(side):
                seen.append(int(side))
                return side

            side = tf.py_function(record, [tf.shape(x)[1]], tf.int32)
            side.set_shape(())
            return x + tf.cast(side * 0, x.dtype)

        def compute_output_shape(self, shape):
            return shape

    inner = zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(None, None, 3))
    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, inner(Probe()(inputs)))


def test_every_batch_has_the_scheduled_size(fresh_keras):
    keras = fresh_keras
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (24, 70, 50, 3)).astype("float32")  # raw, odd sizes
    y = rng.integers(0, 3, 24)
    train = ResizableImages(x, y, size=32, batch_size=8)
    val = ResizableImages(x[:8], y[:8], size=32, batch_size=8, shuffle=False)
    seen, traces = [], []
    model = _probed_model(keras, seen, traces)
    model.compile("adam", "sparse_categorical_crossentropy")
    seen.clear(), traces.clear()  # building the model traced it once
    schedule = {0: 32, 1: 48, 3: 64}
    history = model.fit(
        train.dataset(),
        validation_data=val.dataset(),
        epochs=4,
        verbose=0,
        callbacks=[ProgressiveResizing(schedule, train, val, verbose=0)],
    )
    # 3 training batches per epoch, then 1 validation batch at the final size
    expected = []
    for size in (32, 48, 48, 64):
        expected += [size] * 3 + [64]
    assert seen == expected
    assert history.history["image_size"] == [32, 48, 48, 64]
    assert history.history["val_image_size"] == [64, 64, 64, 64]
    assert len(traces) <= 3 + 1  # at most one trace per training size (+1 validation)


def test_validation_at_the_current_size(fresh_keras):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (16, 40, 40, 3)).astype("float32"), rng.integers(0, 3, 16)
    train = ResizableImages(x, y, size=32, batch_size=8)
    val = ResizableImages(x, y, size=32, batch_size=8, shuffle=False)
    model = zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(None, None, 3))
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(
        train.dataset(),
        validation_data=val.dataset(),
        epochs=2,
        verbose=0,
        callbacks=[
            ProgressiveResizing({0: 32, 1: 40}, train, val, validation_size="current", verbose=0)
        ],
    )
    assert history.history["val_image_size"] == [32, 40]


def test_repeated_pipeline_is_refused(fresh_keras):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (16, 40, 40, 3)).astype("float32"), rng.integers(0, 3, 16)
    train = ResizableImages(x, y, size=32, batch_size=8)
    model = zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(None, None, 3))
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(BuildArgumentError, match="leak"):
        model.fit(
            train.dataset().repeat(),
            steps_per_epoch=5,
            epochs=2,
            verbose=0,
            callbacks=[ProgressiveResizing({0: 32, 1: 40}, train)],
        )


def test_too_small_and_similar_warnings(fresh_keras):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (16, 40, 40, 3)).astype("float32"), rng.integers(0, 3, 16)
    train = ResizableImages(x, y, size=16, batch_size=8)
    model = zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(None, None, 3))
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(BuildArgumentError, match="minimum input of 32"):
        model.fit(
            train.dataset(), epochs=1, verbose=0, callbacks=[ProgressiveResizing({0: 16}, train)]
        )
    with pytest.warns(UserWarning, match="below the 224 px of its pretraining"):
        model.fit(
            train.dataset(),
            epochs=1,
            verbose=0,
            callbacks=[ProgressiveResizing({0: 32}, train, similar=True, verbose=0)],
        )
