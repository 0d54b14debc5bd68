"""`zoo-transfer rank` as a user runs it: the installed script, a folder on disk, JSON out.

One run ranks DigitNet (shipped weights) with its random control and the stage probes,
beside a model whose weights are missing (an empty Keras cache, offline): that model is
reported, the others are ranked, the exit status is 1, and the plot is a PNG.
"""

from __future__ import annotations

import json
import os
import socket

import pytest
from user_shell import zoo_transfer_script

MISSING = "mobilenet_v3_small.a100"


def _offline() -> bool:
    try:
        with socket.create_connection(("storage.googleapis.com", 443), timeout=2):
            return False
    except OSError:
        return True


@pytest.fixture(scope="module")
def ranked(make_folder, tmp_path_factory):
    import subprocess

    if not _offline():
        pytest.skip("online: the missing weights would be downloaded")
    root = tmp_path_factory.mktemp("rank")
    data = make_folder(root / "digits", per_class=12, classes=5)
    plot = root / "out" / "stages.png"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_HOME": str(root / "keras")}
    args = [
        zoo_transfer_script(), "rank", "--data", str(data), "--models", f"digitnet,{MISSING}",
        "--controls", "--stages", "--plot", str(plot), "--format", "json",
    ]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    return proc, plot


def test_the_missing_model_is_reported_and_the_others_ranked(ranked):
    proc, _ = ranked
    assert proc.returncode == 1, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)["models"]
    assert [(r["model"], r["weights"]) for r in rows] == [
        ("digitnet.digits04", "imagenet"), ("digitnet.digits04", "random"), (MISSING, "imagenet"),
    ]  # fmt: skip
    assert [r["rank"] for r in rows] == [1, 2, None]
    assert rows[0]["logme"] > rows[1]["logme"]  # the pretrained model above its control
    assert rows[2]["logme"] is None and f"--weights {MISSING}=FILE" in rows[2]["error"]
    assert f"Error: 1 of 3 models could not be ranked: {MISSING}" in proc.stderr


def test_json_keys_stages_and_plot(ranked):
    proc, plot = ranked
    data = json.loads(proc.stdout)
    assert set(data) == {"source", "n_images", "classes", "models"}
    assert data["n_images"] == 60 and data["classes"] == ["5", "6", "7", "8", "9"]
    for row in data["models"][:2]:
        assert set(row) == {
            "rank", "model", "weights", "logme", "leep", "seconds", "feature_size",
            "n_images", "image_size", "stage_accuracy", "error", "features", "standardized",
        }  # fmt: skip
        assert row["standardized"] is True  # the default
        assert list(row["stage_accuracy"]) == ["stem", "stage1", "stage2", "stage3"]
        assert all(0 <= a <= 1 for a in row["stage_accuracy"].values())
        assert row["n_images"] == 60 and row["image_size"] == 32
        # what the default head reads: stage1, stage2 and stage3 (16, 32, 64), avg and max
        assert (row["features"], row["feature_size"]) == ("head", 2 * (16 + 32 + 64))
    assert data["models"][0]["leep"] < 0 and data["models"][1]["leep"] is None
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
