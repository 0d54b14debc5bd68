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


def _size_probe_model(keras):
    """A model whose Probe layer stores the last batch's image side in a variable."""

    class Probe(keras.layers.Layer):
        def build(self, shape):
            self.side = self.add_weight(
                shape=(), dtype="int32", initializer="zeros", trainable=False, name="side"
            )

        def call(self, x):
            self.side.assign(keras.ops.shape(x)[1])
            return x

    inner = zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(None, None, 3))
    inputs = keras.Input((None, None, 3))
    probe = Probe()
    return keras.Model(inputs, inner(probe(inputs))), probe


def _sides(keras, probe):
    sides = []

    class Read(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            sides.append(int(probe.side.numpy()))

    return sides, Read()


def test_sizes_under_xla(fresh_keras):
    keras = fresh_keras
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (16, 50, 50, 3)).astype("float32"), rng.integers(0, 3, 16)
    train = ResizableImages(x, y, size=32, batch_size=8)
    model, probe = _size_probe_model(keras)
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    sides, read = _sides(keras, probe)
    model.fit(
        train.dataset(),
        epochs=3,
        verbose=0,
        callbacks=[ProgressiveResizing({0: 32, 1: 48}, train, verbose=0), read],
    )
    assert sides == [32, 48, 48]


def test_resume_gets_the_size_of_the_resumed_epoch(fresh_keras, tmp_path):
    keras = fresh_keras
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (16, 50, 50, 3)).astype("float32"), rng.integers(0, 3, 16)
    schedule = {0: 32, 2: 40, 3: 48}

    def run(stop_after=None):
        keras.backend.clear_session()
        train = ResizableImages(x, y, size=32, batch_size=8)
        model, probe = _size_probe_model(keras)
        model.compile("adam", "sparse_categorical_crossentropy")
        sides, read = _sides(keras, probe)

        class Crash(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == stop_after:
                    raise KeyboardInterrupt

        callbacks = [
            ProgressiveResizing(schedule, train, verbose=0),
            keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
            read,
        ]
        if stop_after is not None:
            callbacks.append(Crash())
        try:
            history = model.fit(train.dataset(), epochs=4, verbose=0, callbacks=callbacks)
        except KeyboardInterrupt:
            return sides, None
        return sides, history

    first, _ = run(stop_after=1)
    assert first == [32, 32]
    resumed, history = run()
    assert resumed == [40, 48]  # epochs 3 and 4, as in an uninterrupted run
    assert history.history["image_size"] == [40, 48]


MIRRORED = """
from zoo_transfer.callbacks import ProgressiveResizing
from zoo_transfer.data import ResizableImages
rng = np.random.default_rng(0)
x, y = rng.uniform(0, 255, (16, 50, 50, 3)).astype("float32"), rng.integers(0, 3, 16)
train = ResizableImages(x, y, size=32, batch_size=8)
with strategy.scope():
    model = zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(None, None, 3))
    model.compile("adam", "sparse_categorical_crossentropy")
history = model.fit(train.dataset(), epochs=3, verbose=0,
                    callbacks=[ProgressiveResizing({0: 32, 1: 48}, train, verbose=0)])
assert history.history["image_size"] == [32, 48, 48]
assert all(np.isfinite(history.history["loss"]))
print("MIRRORED_RESIZE_OK")
"""


def test_resizing_under_mirrored_strategy(run_on_two_cpus):
    assert "MIRRORED_RESIZE_OK" in run_on_two_cpus(MIRRORED)
