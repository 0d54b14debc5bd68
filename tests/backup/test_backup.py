"""Backups: written atomically, the previous good one kept, damaged ones named."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from zoo_transfer.errors import BackupError, BackupWarning


def _model(keras, seed=0):
    """A compiled model with a dropout layer (RNG state) and an Adam optimizer (slots)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dropout(0.5), keras.layers.Dense(2)]
    )
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    return model


def _fit(model, epochs=1):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, 32)
    return model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0)


def _state(model):
    rng = [v for v in model.variables if v.name == "seed_generator_state"]
    return (
        [np.asarray(w) for w in model.get_weights()],
        int(model.optimizer.iterations),
        [np.asarray(v) for v in model.optimizer.variables],
        [np.asarray(v) for v in rng],
    )


def _same(a, b):
    for x, y in zip(a, b, strict=True):
        if isinstance(x, list):
            assert len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y, strict=True))
        else:
            assert x == y


def test_restore_brings_back_weights_optimizer_and_rng(fresh_keras, tmp_path):
    from zoo_transfer.backup import restore_backup, save_backup

    model = _model(fresh_keras)
    _fit(model, 2)
    saved = save_backup(model, tmp_path, 2)
    assert saved.name == "epoch-0002" and sorted(p.name for p in saved.iterdir()) == [
        "model.weights.h5",
        "state.json",
    ]
    assert json.loads((saved / "state.json").read_text())["epoch"] == 2
    before = _state(model)
    assert before[3] and before[3][0][1] > 0  # dropout has drawn: its counter moved

    again = _model(fresh_keras, seed=5)  # other initial weights and RNG
    assert restore_backup(again, tmp_path) == 2
    _same(_state(again), before)
    # and training goes on identically: the next epoch's losses match
    assert _fit(again).history["loss"] == pytest.approx(_fit(model).history["loss"], abs=1e-6)


def test_no_backup_means_epoch_zero_and_nothing_loaded(fresh_keras, tmp_path):
    from zoo_transfer.backup import finished_epochs, restore_backup

    model = _model(fresh_keras)
    weights = [np.asarray(w) for w in model.get_weights()]
    assert restore_backup(model, tmp_path / "missing") == 0
    assert finished_epochs(tmp_path / "missing") is None
    _same([[np.asarray(w) for w in model.get_weights()]], [weights])


def test_keeps_the_two_newest_and_drops_backups_of_a_discarded_future(fresh_keras, tmp_path):
    from zoo_transfer.backup import finished_epochs, save_backup

    model = _model(fresh_keras)
    for epoch in (1, 2, 3, 4):
        save_backup(model, tmp_path, epoch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0003", "epoch-0004"]
    assert finished_epochs(tmp_path) == 4
    save_backup(model, tmp_path, 3)  # resumed from 2 after 3 and 4 were damaged: 4 is stale
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0003"]


def test_a_truncated_newest_backup_is_named_and_the_previous_one_used(fresh_keras, tmp_path):
    from zoo_transfer.backup import restore_backup, save_backup

    model = _model(fresh_keras)
    _fit(model)
    save_backup(model, tmp_path, 1)
    good = _state(model)
    _fit(model)
    newest = save_backup(model, tmp_path, 2)
    weights = newest / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # cut short

    again = _model(fresh_keras, seed=5)
    with pytest.warns(BackupWarning, match=r"epoch-0002.*could not be read.*epoch-0001"):
        assert restore_backup(again, tmp_path) == 1
    _same(_state(again), good)


def test_no_readable_backup_is_an_error_that_names_it_and_the_way_out(fresh_keras, tmp_path):
    from zoo_transfer.backup import restore_backup, save_backup

    model = _model(fresh_keras)
    newest = save_backup(model, tmp_path, 1)
    (newest / "model.weights.h5").write_bytes(b"\x89HDF\r\n")  # a kill at the first bytes
    with pytest.raises(BackupError, match=r"epoch-0001.*--overwrite.*another --out"):
        restore_backup(_model(fresh_keras), tmp_path)


def test_the_keras_layout_of_earlier_runs_is_read_and_a_truncated_one_named(fresh_keras, tmp_path):
    from zoo_transfer.backup import restore_backup

    model = _model(fresh_keras)
    _fit(model)
    backup = fresh_keras.callbacks.BackupAndRestore(str(tmp_path), delete_checkpoint=False)
    backup.set_model(model)
    backup.on_epoch_end(0)  # what 0.1's runs left: latest.weights.h5 + training_metadata.json
    again = _model(fresh_keras, seed=5)
    assert restore_backup(again, tmp_path) == 1
    _same(_state(again)[:3], _state(model)[:3])

    weights = tmp_path / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BackupError, match=r"latest\.weights\.h5"):
        restore_backup(_model(fresh_keras), tmp_path)


def test_a_failed_write_leaves_the_earlier_backups_whole(fresh_keras, tmp_path, monkeypatch):
    from zoo_transfer.backup import restore_backup, save_backup

    model = _model(fresh_keras)
    _fit(model)
    save_backup(model, tmp_path, 1)
    good = _state(model)
    _fit(model)

    def disk_full(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x89HDF half a file")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(model, "save_weights", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_backup(model, tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0001"]  # no partial left
    again = _model(fresh_keras, seed=5)
    assert restore_backup(again, tmp_path) == 1
    _same(_state(again), good)


def test_epoch_backup_saves_after_every_epoch(fresh_keras, tmp_path):
    from zoo_transfer.backup import EpochBackup, finished_epochs

    model = _model(fresh_keras)
    x, y = np.zeros((8, 4), "float32"), np.zeros(8, "int64")
    model.fit(x, y, epochs=3, verbose=0, callbacks=[EpochBackup(tmp_path)])
    assert finished_epochs(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0002", "epoch-0003"]
