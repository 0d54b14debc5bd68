"""The job's linear probe (`probe`) and what `final.keras` holds (`final`), through `job.run`."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def folders(make_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("probe-final")
    return (make_folder(root / "train", per_class=12, classes=3),
            make_folder(root / "val", per_class=10, seed=1, classes=3))  # fmt: skip


def _config(folders, **kw):
    from zoo_transfer.job import JobConfig

    train, val = folders
    defaults = dict(model="digitnet", data=str(train), validation=str(val), epochs=2,
                    batch_size=8, augment="none")  # fmt: skip
    return JobConfig(**{**defaults, **kw})


def _weights(path):
    import keras

    return keras.saving.load_model(path, compile=False).get_weights()


def test_final_last_keeps_the_last_epoch_and_best_restores_the_probe(
    fresh_keras, folders, tmp_path
):
    """A learning rate far too high wrecks the epochs, so the probe is the best model."""
    from zoo_transfer.job import run

    last = run(_config(folders, lr=3.0, final="last"), tmp_path / "last", verbose=0, report=False)
    assert last.probe is not None and last.final_from == "last epoch"
    assert last.val_accuracy == last.history["val_accuracy"][-1]
    assert last.val_accuracy < last.probe["val_accuracy"], "the wrecked epochs lose to the probe"
    final_last = _weights(tmp_path / "last" / "final.keras")
    best_file = _weights(tmp_path / "last" / "best.keras")
    assert not all(np.array_equal(a, b) for a, b in zip(final_last, best_file, strict=True))

    best = run(_config(folders, lr=3.0), tmp_path / "best", verbose=0, report=True)
    assert best.final_from == "linear probe"
    assert best.val_accuracy == pytest.approx(best.probe["val_accuracy"])
    for a, b in zip(_weights(tmp_path / "best" / "final.keras"),
                    _weights(tmp_path / "best" / "best.keras"), strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert metrics["val_accuracy"] == pytest.approx(best.probe["val_accuracy"])
    html = (tmp_path / "best" / "report.html").read_text()
    assert "final.keras holds the linear probe" in html


def test_no_probe_trains_from_a_random_head(fresh_keras, folders, tmp_path):
    from zoo_transfer.job import JobConfig, run

    result = run(_config(folders, probe=False), tmp_path / "run", verbose=0, report=False)
    assert result.probe is None and not (tmp_path / "run" / "probe.json").exists()
    with pytest.raises(Exception, match="final"):
        JobConfig(model="digitnet", data="x", final="first")
