"""The guards in the training job: `JobConfig` checks and round trip, `--wise-ft`'s mix of
the probe and the last epoch, and a resumed run that keeps L2-SP, AdaBN and WiSE-FT."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo_transfer import ArgumentError
from zoo_transfer.errors import OutputFolderError


@pytest.fixture(scope="module")
def folders(make_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("guards-job")
    return (make_folder(root / "train", per_class=8, classes=3),
            make_folder(root / "val", per_class=6, seed=1, classes=3))  # fmt: skip


def _config(folders, **kw):
    from zoo_transfer.job import JobConfig

    train, val = folders
    defaults = dict(model="digitnet", data=str(train), validation=str(val), epochs=2,
                    batch_size=8, augment="none", cache_features=False)  # fmt: skip
    return JobConfig(**{**defaults, **kw})


def _weights(path):
    import keras

    return keras.saving.load_model(path, compile=False).get_weights()


def test_the_config_checks_and_round_trips_the_guards(folders):
    from zoo_transfer.job import JobConfig

    config = _config(folders, l2_sp=0.01, wise_ft="sweep", adabn=True)
    back = JobConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert (back.l2_sp, back.wise_ft, back.adabn) == (0.01, "sweep", True)
    assert _config(folders, wise_ft="0.25").wise_ft == 0.25
    old = {k: v for k, v in config.to_json().items() if k not in ("l2_sp", "wise_ft", "adabn")}
    before = JobConfig.from_json(old)  # a config.json written before the guards existed
    assert (before.l2_sp, before.wise_ft, before.adabn) == (None, None, False)

    bad = [
        (dict(l2_sp=-1.0), "--l2-sp.*Received: l2_sp=-1.0"),
        (dict(l2_sp=float("nan")), "--l2-sp.*Received: l2_sp=nan"),
        (dict(l2_sp="strong"), "--l2-sp.*Received: l2_sp='strong'"),
        (dict(wise_ft=1.5), r"--wise-ft to be a number in \[0, 1\].*Received: 1.5"),
        (dict(wise_ft="best"), "or 'sweep'. Received: 'best'"),
        (dict(wise_ft=0.5, probe=False), "fits no probe.*probe=False"),
        (dict(wise_ft=0.5, recipe="small-similar"), "fits no probe.*recipe='small-similar'"),
        (dict(wise_ft="sweep", validation=None, validation_split=0.0), "has none"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ArgumentError, match=message):
            _config(folders, **kwargs)


def test_wise_ft_mixes_the_probe_and_the_last_epoch(keras_session, folders, tmp_path):
    """Two runs alike but for --wise-ft 0.5: its final.keras is the mean of its probe.keras
    and the other's (last-epoch) final.keras, whatever `final` would have chosen."""
    from zoo_transfer.job import run

    plain = run(_config(folders, final="last"), tmp_path / "plain", verbose=0, report=False)
    mixed = run(_config(folders, wise_ft=0.5), tmp_path / "mixed", verbose=0, report=True)
    assert plain.wise_ft is None and not (tmp_path / "plain" / "probe.keras").exists()

    probe = _weights(tmp_path / "mixed" / "probe.keras")
    last = _weights(tmp_path / "plain" / "final.keras")
    final = _weights(tmp_path / "mixed" / "final.keras")
    assert not all(np.array_equal(p, q) for p, q in zip(probe, last, strict=True))
    for p, q, f in zip(probe, last, final, strict=True):
        np.testing.assert_allclose(f, (p.astype("float64") + q) / 2, atol=1e-6)
    assert (tmp_path / "mixed" / "best.keras").exists()  # still the best of probe and epochs

    wise = mixed.wise_ft
    assert wise["alpha"] == 0.5 and wise["alphas"] == [0.5] and wise["chosen_by"] == "--wise-ft"
    assert "WiSE-FT mix (alpha 0.5) of the linear probe and the last epoch" == mixed.final_from
    metrics = json.loads((tmp_path / "mixed" / "metrics.json").read_text())
    assert metrics["wise_ft"] == wise
    assert metrics["val_accuracy"] == pytest.approx(wise["val_accuracy"])  # measured twice
    html = (tmp_path / "mixed" / "report.html").read_text()
    assert "WiSE-FT (--wise-ft): final.keras holds 0.5 x the linear probe" in html


def test_a_resumed_run_keeps_the_guards_and_equals_an_uninterrupted_one(
    keras_session, folders, tmp_path
):
    from zoo_transfer.job import run
    from zoo_transfer.recipes.stages import find_backbone

    def fresh(config, out, **kw):
        # as in a new process: a second "adam" would be "adam_1", its state under other paths
        keras_session.backend.clear_session()
        return run(config, out, verbose=0, report=False, **kw)

    guards = dict(l2_sp=2.0, adabn=True, wise_ft=0.75)
    whole = fresh(_config(folders, **guards), tmp_path / "whole")
    fresh(_config(folders, epochs=1, **guards), tmp_path / "run")
    with pytest.raises(OutputFolderError, match=r"l2_sp \(2.0 -> 0.5\)"):
        fresh(_config(folders, **{**guards, "l2_sp": 0.5}), tmp_path / "run", resume=True)
    resumed = fresh(_config(folders, **guards), tmp_path / "run", resume=True)

    for a, b in zip(whole.history["loss"], resumed.history["loss"], strict=True):
        assert a == pytest.approx(b, abs=1e-4)
    for a, b in zip(_weights(tmp_path / "whole" / "final.keras"),
                    _weights(tmp_path / "run" / "final.keras"), strict=True):  # fmt: skip
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert resumed.wise_ft["alpha"] == 0.75

    # the job's optimizer pulled toward the pretrained backbone, AdaBN's statistics aside
    optimizer = resumed.model.optimizer
    assert optimizer.l2_sp == 2.0
    import zoo_transfer

    pretrained = {w.path: w.numpy() for w in zoo_transfer.build("digitnet", 3).weights}
    anchors = optimizer.anchors()
    backbone, _ = find_backbone(resumed.model)
    kernels = [w.path for w in backbone.weights if w.path.endswith("conv/kernel")]
    assert kernels and set(kernels) <= set(anchors)
    for path in kernels:
        np.testing.assert_array_equal(anchors[path].numpy(), pretrained[path])
