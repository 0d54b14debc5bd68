"""The job on a keras-hub transformer with progressive resizing: one build per size, and
a run stopped at the change of size and resumed ends with the weights of a run that was
not stopped (the resumed process builds at the size of the last finished epoch, loads
the backup, then rebuilds for the next size).

The shell path (`zoo-transfer train PRESET --progressive 28,42`, predict, plain-Keras
load) is in `tests/e2e/test_hub_save_load.py`.
"""

from __future__ import annotations

import json

import pytest

from zoo_transfer.backup import EpochBackup
from zoo_transfer.errors import TrainingInterrupted
from zoo_transfer.job import JobConfig, run

pytest.importorskip("keras_hub", reason="keras-hub (the hub extra) is not installed")


def test_a_run_stopped_at_the_change_of_size_resumes_to_the_same_weights(
    hub_presets, make_folder, tmp_path, monkeypatch
):
    data = make_folder(tmp_path / "data", per_class=6, classes=3)
    config = JobConfig(
        str(hub_presets["vit"]), str(data), epochs=3, progressive=[32, 48], batch_size=6,
        unfreeze={2: "block2"}, augment="light",
    )  # fmt: skip
    whole = run(config, tmp_path / "whole", verbose=0, report=False)

    written = EpochBackup.on_epoch_end

    def stop_after_the_second_epoch(self, epoch, logs=None):
        written(self, epoch, logs)
        if epoch == 1:  # the last epoch at 32 px: the next one needs a new build
            raise KeyboardInterrupt

    monkeypatch.setattr(EpochBackup, "on_epoch_end", stop_after_the_second_epoch)
    with pytest.raises(TrainingInterrupted):
        run(config, tmp_path / "stopped", verbose=0, report=False)
    monkeypatch.undo()
    history = json.loads((tmp_path / "stopped" / "history.json").read_text())
    assert [r["image_size"] for r in history] == [32, 32]
    resumed = run(config, tmp_path / "stopped", resume=True, verbose=0, report=False)

    sizes = [r["image_size"] for r in json.loads((tmp_path / "stopped/history.json").read_text())]
    assert sizes == [32, 32, 48]
    assert tuple(resumed.model.input.shape) == (None, 48, 48, 3)
    assert resumed.history["loss"] == pytest.approx(whole.history["loss"], rel=1e-5)
    assert resumed.fingerprint == whole.fingerprint  # the same final weights, bit for bit
