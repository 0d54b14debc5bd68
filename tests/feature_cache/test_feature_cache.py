"""`FeatureCache`: stored rows come back only while nothing that shaped them changed."""

from __future__ import annotations

import os

import numpy as np
import pytest

from zoo_transfer.feature_cache import FeatureCache
from zoo_transfer.input_spec import InputSpec


@pytest.fixture
def files(tmp_path):
    paths = []
    for i in range(4):
        path = tmp_path / "data" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes([i]) * (10 + i))
        paths.append(str(path))
    return paths


def test_rows_come_back_in_the_order_asked(tmp_path, files):
    cache = FeatureCache(tmp_path / "cache")
    spec = InputSpec(side=32)
    features = np.arange(8, dtype="float32").reshape(4, 2)
    assert cache.put("digitnet.digits04", "imagenet", spec, files, features) is not None
    got = cache.get("digitnet.digits04", "imagenet", spec, files)
    np.testing.assert_array_equal(got, features)
    # a split asks for its files in its own order: the same set, another order
    order = [2, 0, 3, 1]
    again = cache.get("digitnet.digits04", "imagenet", spec, [files[i] for i in order])
    np.testing.assert_array_equal(again, features[order])


def test_nothing_comes_back_when_anything_changed(tmp_path, files):
    cache = FeatureCache(tmp_path / "cache")
    spec = InputSpec(side=32)
    features = np.ones((4, 3), "float32")
    cache.put("digitnet.digits04", "imagenet", spec, files, features)
    assert cache.get("digitnet.digits04", "imagenet", InputSpec(side=48), files) is None
    assert cache.get("digitnet.digits04", "imagenet", spec, files[:3]) is None  # other set
    assert cache.get("mobilenet.a025_224", "imagenet", spec, files) is None
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"x")
    assert cache.get("digitnet.digits04", str(weights), spec, files) is None
    os.utime(files[1], ns=(1, 1))  # an image was replaced
    assert cache.get("digitnet.digits04", "imagenet", spec, files) is None


def test_random_weights_are_never_stored(tmp_path, files):
    cache = FeatureCache(tmp_path / "cache")
    assert cache.put("digitnet.digits04", None, InputSpec(side=32), files, np.ones((4, 2))) is None
    assert not (tmp_path / "cache").exists()


def test_a_weights_file_is_known_by_its_content_stamp(tmp_path, files):
    cache = FeatureCache(tmp_path / "cache")
    spec = InputSpec(side=32)
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"first")
    cache.put("digitnet.digits04", str(weights), spec, files, np.ones((4, 2)))
    assert cache.get("digitnet.digits04", str(weights), spec, files) is not None
    weights.write_bytes(b"second, longer")  # retrained weights: new features
    assert cache.get("digitnet.digits04", str(weights), spec, files) is None


def test_the_default_folder_follows_the_environment(tmp_path, monkeypatch):
    from zoo_transfer.feature_cache import default_root

    monkeypatch.setenv("ZOO_TRANSFER_CACHE_DIR", str(tmp_path))
    assert default_root() == tmp_path / "features"
