"""Cached-feature head training: same model, same predictions, far less work per epoch.

All tests use the shipped `digitnet` card (offline weights, 32 px) on the embedded
digits (5-9): 20 training images per class, the other ~800 held out.
"""

from __future__ import annotations

import numpy as np
import pytest

from zoo_transfer.errors import BuildArgumentError, DataError

EPOCHS = 4


@pytest.fixture(scope="module")
def digits():
    from zoo_transfer.recipes.digitnet import demo_digits

    x, y, x_val, y_val, _ = demo_digits(seed=0, train_per_class=20)
    return x.astype("float32"), y, x_val.astype("float32"), y_val


def _model(compile_lr: float | None = 0.01, source=None, **build_kwargs):
    """A digitnet model; with `source`, a copy of its weights (same initial head)."""
    import keras

    import zoo_transfer

    model = zoo_transfer.build("digitnet", 5, **build_kwargs)
    if source is not None:
        model.set_weights(source.get_weights())
    if compile_lr is not None:
        model.compile(
            keras.optimizers.Adam(compile_lr),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    return model


def _head_weights(model):
    return [w.numpy().copy() for w in model.get_layer("head_logits").weights]


def _trunk_weights(model):
    layers = [model.get_layer("preprocess"), model.get_layer("digitnet")]
    return [w.numpy().copy() for layer in layers for w in layer.weights]


@pytest.fixture(scope="module")
def trained(digits):
    from zoo_transfer.cached import fit_cached_head

    x, y, x_val, y_val = digits
    model = _model()
    trunk_before, head_before = _trunk_weights(model), _head_weights(model)
    history = fit_cached_head(
        model, (x, y), (x_val, y_val), epochs=EPOCHS, batch_size=16, verbose=0
    )
    return model, history, trunk_before, head_before


# ------------------------------------------------------------------ the split
def test_split_shares_the_layers_and_pools_inside_the_trunk(digits):
    from zoo_transfer.features import split_head

    model = _model(compile_lr=None)
    trunk, head = split_head(model)
    assert tuple(trunk.output.shape) == (None, 64)  # pooled: head_pool moved into the trunk
    assert head.get_layer("head_logits") is model.get_layer("head_logits")
    assert [w.path for w in head.trainable_weights] == [w.path for w in model.trainable_weights]
    assert not trunk.trainable_weights
    x = digits[2][:6]
    np.testing.assert_allclose(head(trunk(x)), model(x), atol=1e-6)


# ------------------------------------------------------------------ cached training
def test_history_has_the_keys_of_a_full_fit_and_records_the_cache(trained, digits):
    _, history, _, _ = trained
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == EPOCHS for v in history.history.values())
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.cached is True and history.storage == "memory"
    assert history.num_train == 100 and history.num_val == len(digits[2]) > 700
    assert (
        history.feature_shape == (64,) and history.feature_bytes == (100 + history.num_val) * 64 * 4
    )
    assert history.feature_seconds > 0 and history.cache_files == []


def test_predictions_equal_trunk_then_head_and_a_full_forward_pass(trained, digits, tmp_path):
    import keras

    from zoo_transfer.features import split_head

    model, _, _, _ = trained
    rng = np.random.default_rng(1)
    new = rng.uniform(0, 255, (7, 32, 32, 3)).astype("float32")  # images never seen
    new = np.concatenate([new, digits[2][-5:]])
    full = model.predict(new, verbose=0)
    trunk, head = split_head(model)
    np.testing.assert_allclose(
        head.predict(trunk.predict(new, verbose=0), verbose=0), full, atol=1e-5
    )
    np.testing.assert_allclose(np.asarray(model(new, training=False)), full, atol=1e-5)
    model.save(tmp_path / "m.keras")  # a normal full model: saves and loads as one
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(new, verbose=0), full, atol=1e-5)


def test_backbone_is_bit_identical_and_the_head_trained(trained):
    model, _, trunk_before, head_before = trained
    for before, after in zip(trunk_before, _trunk_weights(model), strict=True):
        assert np.array_equal(before, after)
    for before, after in zip(head_before, _head_weights(model), strict=True):
        assert np.abs(before - after).max() > 1e-3


def test_full_batch_gives_the_same_updates_as_a_plain_fit(digits):
    """With one batch per epoch the order cannot differ: both paths must agree exactly."""
    from zoo_transfer.cached import fit_cached_head

    x, y, _, _ = digits
    plain = _model()
    cached = _model(source=plain)
    h_plain = plain.fit(x, y, batch_size=len(x), epochs=5, shuffle=False, verbose=0)
    h_cached = fit_cached_head(cached, (x, y), epochs=5, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(h_cached.history["loss"], h_plain.history["loss"], rtol=1e-4)
    for a, b in zip(_head_weights(plain), _head_weights(cached), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert int(cached.optimizer.iterations) == int(plain.optimizer.iterations) == 5


def test_same_validation_accuracy_as_a_full_fit_on_load_splits(digits):
    """The job's path: `load(...)` splits, shuffled mini-batches, seed 0 on both sides."""
    from zoo_transfer.cached import cached_head_applies, fit_cached_head
    from zoo_transfer.data import load

    x, y, x_val, y_val = digits
    splits = load((x, y), image_size=32, batch_size=10, validation=(x_val, y_val), augment="none")
    plain = _model()
    cached = _model(source=plain)
    assert cached_head_applies(cached, splits, augment="none") == (True, "")
    epochs = 8
    full = plain.fit(
        splits.train, validation_data=splits.val, epochs=epochs, verbose=0, shuffle=False
    )
    fast = fit_cached_head(cached, splits, epochs=epochs, verbose=0, seed=0)
    assert fast.num_train == 100 and fast.num_val == len(x_val)
    acc_full, acc_fast = full.history["val_accuracy"][-1], fast.history["val_accuracy"][-1]
    assert acc_full > 0.6  # it learned something, so the comparison means something
    assert abs(acc_full - acc_fast) <= 0.05, (acc_full, acc_fast)


# ------------------------------------------------------------------ storage
class _FilesSeen:
    """A callback that lists the feature files present at each epoch end."""

    def __new__(cls, folder):
        import keras

        class Seen(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                self.seen.append({p.name: p.stat().st_size for p in folder.glob("*")})

        callback = Seen()
        callback.seen = []
        return callback


def test_disk_storage_spills_to_files_and_matches_memory(digits, tmp_path):
    from zoo_transfer.cached import fit_cached_head

    x, y, x_val, y_val = digits
    in_memory = _model()
    on_disk = _model(source=in_memory)
    folder = tmp_path / "out" / "features"
    seen = _FilesSeen(folder)
    h_mem = fit_cached_head(in_memory, (x, y), (x_val, y_val), epochs=3, batch_size=16, verbose=0)
    h_disk = fit_cached_head(
        on_disk, (x, y), (x_val, y_val), epochs=3, batch_size=16, verbose=0,
        storage="disk", cache_dir=folder, callbacks=[seen],
    )  # fmt: skip
    assert h_mem.storage == "memory" and h_disk.storage == "disk"
    expected = {"features-train.bin": 100 * 64 * 4, "features-val.bin": len(x_val) * 64 * 4}
    assert seen.seen == [expected] * 3  # present while training, full size
    assert not folder.exists()  # deleted afterwards, with the folder it created
    assert (tmp_path / "out").is_dir()
    assert h_disk.history.keys() == h_mem.history.keys()
    for key, values in h_mem.history.items():
        np.testing.assert_allclose(h_disk.history[key], values, atol=1e-6)
    for a, b in zip(_head_weights(in_memory), _head_weights(on_disk), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_auto_storage_goes_to_disk_when_memory_is_short(digits, tmp_path, monkeypatch):
    from zoo_transfer import cached, features

    x, y, _, _ = digits
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "keep.txt").write_text("user file")
    monkeypatch.setattr(features, "_available_memory", lambda: 40_000)  # 10 kB budget
    history = cached.fit_cached_head(
        _model(), (x, y), epochs=1, verbose=0, cache_dir=existing, batch_size=25
    )
    assert history.storage == "disk"
    assert history.cache_files == [str(existing / "features-train.bin")]
    assert sorted(p.name for p in existing.iterdir()) == ["keep.txt"]  # only its files go


# ------------------------------------------------------------------ data kinds, callbacks
def test_batched_dataset_with_one_hot_labels(digits):
    import tensorflow as tf

    from zoo_transfer.cached import fit_cached_head

    x, y, _, _ = digits
    model = _model(compile_lr=None)
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    data = tf.data.Dataset.from_tensor_slices((x, np.eye(5, dtype="float32")[y])).batch(16)
    history = fit_cached_head(model, data, data, epochs=2, verbose=0)
    assert history.num_train == 100 and history.num_val == 100
    assert 0.0 <= history.history["val_accuracy"][-1] <= 1.0
    assert len(history.history["loss"]) == 2


def test_callbacks_see_the_full_model_and_can_stop_training(digits, tmp_path):
    import keras

    from zoo_transfer.cached import fit_cached_head

    x, y, x_val, y_val = digits
    model = _model()
    models_seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            models_seen.append(self.model)

    stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=1e9, patience=0)
    best = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "best.keras"), monitor="val_accuracy", save_best_only=True
    )
    history = fit_cached_head(
        model, (x, y), (x_val[:50], y_val[:50]), epochs=10, verbose=0,
        callbacks=[Probe(), stop, best],
    )  # fmt: skip
    assert len(history.history["loss"]) == 2  # stopped after epoch 1, not 10
    assert all(m is model for m in models_seen)
    saved = keras.saving.load_model(tmp_path / "best.keras")
    assert [layer.name for layer in saved.layers] == [layer.name for layer in model.layers]


def test_backup_and_restore_resumes_the_full_model_at_its_epoch(digits, tmp_path):
    """The job's `--resume`: a second call continues from the last finished epoch."""
    import keras

    from zoo_transfer.cached import fit_cached_head

    x, y, _, _ = digits
    backup = str(tmp_path / "backup")
    first = _model()
    h1 = fit_cached_head(
        first, (x, y), epochs=2, verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)],
    )  # fmt: skip
    again = _model()
    h2 = fit_cached_head(
        again, (x, y), epochs=4, verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)],
    )  # fmt: skip
    assert h1.epoch == [0, 1] and h2.epoch == [2, 3]
    assert int(again.optimizer.iterations) == 4 * 4  # restored state: 4 epochs of 4 steps
    assert h2.history["loss"][0] < h1.history["loss"][0]  # went on from trained weights


def test_refuses_a_model_it_would_train_wrongly(digits):
    from zoo_transfer.cached import fit_cached_head

    x, y, _, _ = digits
    with pytest.raises(BuildArgumentError, match="trainable weights"):
        fit_cached_head(_model(trainable_from="stage3"), (x, y), epochs=1, verbose=0)
    with pytest.raises(BuildArgumentError, match="compiled"):
        fit_cached_head(_model(compile_lr=None), (x, y), epochs=1, verbose=0)
    with pytest.raises(BuildArgumentError, match="storage='ram'"):
        fit_cached_head(_model(), (x, y), epochs=1, verbose=0, storage="ram")
    with pytest.raises(DataError, match="3 items"):
        fit_cached_head(_model(), (x, y, y), epochs=1, verbose=0)


# ------------------------------------------------------------------ when it applies
def test_applies_to_a_frozen_build_without_augmentation(digits):
    from zoo_transfer.cached import cached_head_applies

    model = _model(compile_lr=None)
    assert cached_head_applies(model, digits[:2], augment="none") == (True, "")
    assert cached_head_applies(model, None, augment="none", progressive=[32]) == (True, "")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"augment": "light"}, "augmentation 'light'"),
        ({"augment": "heavy"}, "augmentation 'heavy'"),
        ({"augment": "none", "progressive": [32, 40]}, "progressive resizing [32, 40]"),
        ({"augment": "none", "progressive": {0: 32, 2: 48}}, "progressive resizing [32, 48]"),
        (
            {"augment": "none", "unfreeze": {2: "stage3"}},
            "an unfreeze schedule trains the backbone during the run (stage3)",
        ),
    ],
)
def test_does_not_apply_when_inputs_change_between_epochs(kwargs, reason):
    from zoo_transfer.cached import cached_head_applies

    ok, why = cached_head_applies(_model(compile_lr=None), None, **kwargs)
    assert ok is False and reason in why


def test_does_not_apply_to_an_unfrozen_stage_or_a_repeating_dataset(digits):
    import tensorflow as tf

    from zoo_transfer.cached import cached_head_applies

    ok, why = cached_head_applies(
        _model(compile_lr=None, trainable_from="stage3"), None, augment="none"
    )
    assert ok is False and "trainable weights (stage3_block1_conv/kernel" in why
    forever = tf.data.Dataset.from_tensor_slices(digits[:2]).batch(8).repeat()
    ok, why = cached_head_applies(_model(compile_lr=None), forever, augment="none")
    assert ok is False and "repeats forever" in why


def test_does_not_apply_to_a_trunk_with_dropout():
    """EfficientNet's stochastic depth is a Dropout inside the frozen backbone."""
    import zoo_transfer
    from zoo_transfer.cached import cached_head_applies

    model = zoo_transfer.build("efficientnet_b0", 3, weights=None, input_shape=(32, 32, 3))
    ok, why = cached_head_applies(model, None, augment="none")
    assert ok is False and "(Dropout)" in why and "random during training" in why
