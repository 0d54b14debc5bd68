"""`zoo-transfer rank`, then `zoo-transfer train` of a ranked model on the same folder:
the probe uses the features rank stored, and fits the head it would have fitted anyway."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
from user_shell import shell

TRAIN = ["train", "digitnet", "--batch-size", "8", "--epochs", "1"]


def test_train_reuses_the_features_rank_stored(make_folder, tmp_path):
    data = make_folder(tmp_path / "digits", per_class=12, classes=3)
    old = os.environ.get("ZOO_TRANSFER_CACHE_DIR")
    os.environ["ZOO_TRANSFER_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        shell("rank", "--data", str(data), "--models", "digitnet", "--format", "json")
        stored = list((tmp_path / "cache" / "features").glob("*.npz"))
        assert len(stored) == 1
        reused = shell(*TRAIN, "--data", str(data), "--out", str(tmp_path / "reused")).stdout
        os.environ["ZOO_TRANSFER_CACHE_DIR"] = str(tmp_path / "empty")  # nothing stored
        fresh = shell(*TRAIN, "--data", str(data), "--out", str(tmp_path / "fresh")).stdout
    finally:
        if old is None:
            os.environ.pop("ZOO_TRANSFER_CACHE_DIR", None)
        else:
            os.environ["ZOO_TRANSFER_CACHE_DIR"] = old
    probes = {
        run: json.loads((tmp_path / run / "probe.json").read_text()) for run in ("reused", "fresh")
    }
    assert "features of 36 images come from zoo-transfer rank" in reused
    assert "come from zoo-transfer rank" not in fresh
    assert probes["reused"]["features_from_rank"] is True
    assert probes["fresh"]["features_from_rank"] is False
    # the same features: the same L2 choice and the same accuracies
    assert probes["reused"]["l2"] == probes["fresh"]["l2"]
    for key in ("val_accuracy", "train_accuracy"):
        assert probes["reused"][key] == pytest.approx(probes["fresh"][key], abs=1e-6)
    tried = [np.ravel(probes[run]["tried"]) for run in ("reused", "fresh")]
    np.testing.assert_allclose(tried[0], tried[1], atol=1e-6)
    # and the same head: the probe's weights (best.keras holds the probe until beaten)
    heads = [
        keras.saving.load_model(tmp_path / run / "best.keras", compile=False)
        .get_layer("head_logits")
        .get_weights()
        for run in ("reused", "fresh")
    ]
    for a, b in zip(*heads, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
