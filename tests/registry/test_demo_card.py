"""The DigitNet card: a package-shipped backbone, checked against its real model."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer import CardValidationError, WeightsCorruptError, WeightsUnavailableError
from zoo_transfer.recipes import resolve_tap
from zoo_transfer.recipes.probe import imagenet_build
from zoo_transfer.registry import Registry, card_from_dict, get_card
from zoo_transfer.registry import _registry as registry_module
from zoo_transfer.registry._card import resolve_package_url

ASSETS = Path(zoo_transfer.__file__).parent / "assets"
WEIGHTS = ASSETS / "digitnet_digits04.weights.h5"


def _local(url: str) -> Path:
    return Path(url2pathname(urlparse(url).path))


def test_card_points_at_the_shipped_file_with_its_hash():
    card = get_card("DigitNet")
    assert card.name == "digitnet.digits04" and card.family == "zoo"
    assert card.num_classes == 5 and card.input_size == (32, 32, 3)
    for w in (card.weights_top, card.weights_no_top):
        assert _local(w.location) == WEIGHTS.resolve()  # package:// resolved to this install
        assert w.hash == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert WEIGHTS.stat().st_size < 1_000_000
    assert card.top1 is not None and card.top1 >= 0.95
    assert "pretrain_demo_backbone" in card.accuracy_source


def test_package_url_resolution():
    url = resolve_package_url("package://zoo_transfer/assets/digits.npz")
    assert url.startswith("file://") and _local(url) == (ASSETS / "digits.npz").resolve()
    assert resolve_package_url("https://example.org/x.h5") == "https://example.org/x.h5"
    data = get_card("digitnet").to_dict()
    data.pop("name")
    data["weights_top"]["url"] = "package://no_such_package_zt/w.weights.h5"
    with pytest.raises(CardValidationError) as info:
        card_from_dict(data, "test.json")
    assert info.value.field == "weights_top.url"
    assert "no_such_package_zt" in str(info.value)
    with pytest.raises(CardValidationError, match="not an installed package"):
        resolve_package_url("package://no_such_package_zt/w.h5")  # the public call too


def test_card_matches_the_model(fresh_keras):
    """The registry sweep's checks, run here too: the fast sweep does not list digitnet."""
    card = get_card("digitnet")
    top, rec_top = imagenet_build(card, include_top=True)
    for stage in card.stages:
        shape = tuple(int(d) for d in resolve_tap(top, stage.layer).shape[1:])
        assert shape == stage.shape
        assert card.input_size[0] // shape[0] == stage.stride
    no_top, rec_no_top = imagenet_build(card, include_top=False)
    assert top.count_params() == card.params == 75445
    assert no_top.count_params() == card.params_no_top == 75120
    assert {layer.name for layer in top.layers} - {layer.name for layer in no_top.layers} == set(
        card.head_layers
    )
    for record, declared in ((rec_top, card.weights_top), (rec_no_top, card.weights_no_top)):
        (got,) = record.downloads
        assert (got["file"], got["url"], got["hash"], got["cache_subdir"]) == (
            declared.file,
            declared.location,
            declared.hash,
            declared.cache_subdir,
        )
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(card.preprocessing.normalize(images), images / 127.5 - 1, atol=1e-5)


@pytest.fixture
def copied_zoo(monkeypatch, tmp_path):
    """A registry holding a copy of the DigitNet card whose weights are a copy in tmp."""
    source = tmp_path / "source"
    source.mkdir()
    copy = source / WEIGHTS.name
    copy.write_bytes(WEIGHTS.read_bytes())
    data = get_card("digitnet").to_dict()
    data.pop("name")
    for key in ("weights_top", "weights_no_top"):
        data[key]["url"] = copy.as_uri()
    data.update(arch="zt_digitnet", tag="copy", aliases=[])
    registry = Registry(builtin=False, plugins=False)
    registry.register(json.loads(json.dumps(data)))
    monkeypatch.setattr(registry_module, "REGISTRY", registry)
    monkeypatch.setattr("zoo_transfer.recipes._build.get_card", registry.get)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(socket, "create_connection", _refuse)  # offline
    return copy, tmp_path / "keras_home" / data["weights_top"]["cache_subdir"] / WEIGHTS.name


def _refuse(*args, **kwargs):
    raise OSError("network is unreachable (test)")


def test_tampered_source_is_refused_and_kept(fresh_keras, copied_zoo):
    copy, cached = copied_zoo
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(WeightsCorruptError, match="sha256 check") as info:
        zoo_transfer.build("zt_digitnet", num_classes=5)
    assert str(copy) in str(info.value) and "reinstall" in str(info.value)
    assert copy.read_bytes() == bytes(data) and not cached.exists()


def test_tampered_cached_copy_is_refused(fresh_keras, copied_zoo):
    copy, cached = copied_zoo
    zoo_transfer.build("zt_digitnet", num_classes=5)  # copies the source into the cache
    assert cached.read_bytes() == WEIGHTS.read_bytes()
    data = bytearray(cached.read_bytes())
    data[-100] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(WeightsCorruptError, match="sha256 check"):
        zoo_transfer.build("zt_digitnet", num_classes=5)


def test_missing_source_says_what_to_do(fresh_keras, copied_zoo):
    copy, _ = copied_zoo
    copy.unlink()
    with pytest.raises(WeightsUnavailableError, match="does not exist. Reinstall"):
        zoo_transfer.build("zt_digitnet", num_classes=5)


def test_packaged_weights_are_used_in_place_never_cached(tmp_path, monkeypatch):
    """A package upgrade can never meet a stale copy in the Keras cache."""
    from zoo_transfer.recipes._weights import imagenet_weights_file

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    card = get_card("digitnet")
    assert card.weights_top.packaged and card.weights_top.url.startswith("package://")
    path = imagenet_weights_file(card, include_top=True)
    assert path.resolve() == WEIGHTS.resolve()
    assert not any(tmp_path.rglob("*.h5"))


def test_the_constructor_requests_the_packaged_file_in_place(tmp_path, monkeypatch):
    """`DigitNet(weights="imagenet")` outside `build` copies nothing to the Keras cache."""
    from zoo_transfer.recipes.digitnet import pretrained_weights_path

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert Path(pretrained_weights_path()).resolve() == WEIGHTS.resolve()
    assert not any(tmp_path.rglob("*.h5"))
