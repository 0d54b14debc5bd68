"""`zoo-transfer fetch` for a keras-hub card, from the shell, and the cache `build` reads.

kagglehub's cache (`KAGGLEHUB_CACHE`) is a folder the test fills with a tiny preset at
the place kagglehub keeps `dinov2_small`'s handle: what a connected machine's download
leaves there. Kaggle itself cannot be reached here.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import time

import pytest

import zoo_transfer
from zoo_transfer.errors import WeightsMismatchError

pytest.importorskip("keras_hub", reason="keras-hub (the hub extra) is not installed")


def _run(args, env):
    return subprocess.run(
        [shutil.which("zoo-transfer"), *args], capture_output=True, text=True, env=env
    )


def test_fetch_copies_the_cached_preset_to_a_folder_and_offline_fails_fast(
    tmp_path, hub_presets, monkeypatch
):
    from zoo_transfer.recipes._hub import kaggle_cache_folder

    card = zoo_transfer.get_card("dinov2_small")
    cache = tmp_path / "kagglehub"
    env = {**os.environ, "KAGGLEHUB_CACHE": str(cache)}
    # nothing cached and no network: a clear error within seconds, exit 1
    start = time.monotonic()
    empty = _run(["fetch", "dinov2_small", "--to", str(tmp_path / "out")], env)
    assert empty.returncode == 1 and time.monotonic() - start < 30
    assert "kaggle://keras/dinov2/keras/dinov2_small/1 is not cached" in empty.stderr
    assert "connected machine" in empty.stderr

    monkeypatch.setenv("KAGGLEHUB_CACHE", str(cache))
    cached = kaggle_cache_folder(card.preset)
    shutil.copytree(hub_presets["dinov2"], cached)
    done = _run(["fetch", "dinov2_small", "--to", str(tmp_path / "out")], env)
    assert done.returncode == 0, done.stderr
    dest = tmp_path / "out" / "dinov2_small"
    assert f"dinov2_small.lvd142m: {dest}" in done.stdout
    names = sorted(p.name for p in cached.iterdir())
    assert "config.json" in names and "model.weights.h5" in names
    assert filecmp.cmpfiles(cached, dest, names, shallow=False)[0] == names
    # the default weights read that cache: here it holds the tiny preset, not the card's
    with pytest.raises(WeightsMismatchError, match="hidden_dim=32"):
        zoo_transfer.build("dinov2_small", num_classes=2)
