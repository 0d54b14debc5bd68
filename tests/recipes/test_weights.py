"""Weights from every source, and the errors for missing, corrupt and wrong files."""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer import WeightsCorruptError, WeightsMismatchError, WeightsUnavailableError
from zoo_transfer.registry import Registry, get_card
from zoo_transfer.registry import _registry as registry_module

MOBILENET = "mobilenet.a025_224"


@pytest.fixture(scope="module")
def real_weights(shared_data) -> Path:
    return shared_data / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"


def _conv1(model):
    return model.get_layer("mobilenet").get_layer("conv1").kernel.numpy()


def test_keras3_weights_file_loads_into_other_size_and_new_head(fresh_keras, real_weights):
    keras = fresh_keras
    reference = keras.applications.MobileNet(alpha=0.25, weights=None)
    reference.load_weights(str(real_weights))
    model = zoo_transfer.build(
        MOBILENET, num_classes=4, weights=str(real_weights), input_shape=(96, 96, 3)
    )
    np.testing.assert_array_equal(_conv1(model), reference.get_layer("conv1").kernel.numpy())
    bn = model.get_layer("mobilenet").get_layer("conv_pw_13_bn")
    np.testing.assert_array_equal(
        bn.moving_variance.numpy(), reference.get_layer("conv_pw_13_bn").moving_variance.numpy()
    )


def test_legacy_h5_loads_by_layer_name(
    fresh_keras, tmp_path, mobilenet_025_models, write_legacy_h5
):
    top, _ = mobilenet_025_models
    legacy = write_legacy_h5(top, tmp_path / "mobilenet_legacy.h5")
    model = zoo_transfer.build(
        MOBILENET, num_classes=2, weights=str(legacy), cut="stage3", input_shape=(64, 64, 3)
    )
    np.testing.assert_array_equal(_conv1(model), top.get_layer("conv1").kernel.numpy())


def test_file_for_another_architecture_names_the_layers(fresh_keras, real_weights):
    with pytest.raises(WeightsMismatchError) as info:
        zoo_transfer.build("mobilenet.a050_224", num_classes=2, weights=str(real_weights))
    message = str(info.value)
    assert "does not load into mobilenet.a050_224" in message
    assert "mismatching layers include conv1" in message
    assert "(3, 3, 3, 16)" in message and "(3, 3, 3, 8)" in message


def test_truncated_file_is_reported_and_kept(fresh_keras, tmp_path, real_weights):
    broken = tmp_path / "truncated.weights.h5"
    broken.write_bytes(real_weights.read_bytes()[:50_000])
    with pytest.raises((WeightsCorruptError, WeightsMismatchError)):
        zoo_transfer.build(MOBILENET, num_classes=2, weights=str(broken))
    assert broken.exists() and broken.stat().st_size == 50_000


@pytest.fixture
def fake_zoo(monkeypatch, tmp_path, mobilenet_025_models, write_legacy_h5):
    """A card for MobileNet 0.25 whose 'download' is a local file:// URL with an md5.

    The files have Keras' own names and layout, written from the real weights.
    """
    card = get_card(MOBILENET).to_dict()
    card.pop("name")
    served = tmp_path / "server"
    served.mkdir()
    for key, model in zip(("weights_top", "weights_no_top"), mobilenet_025_models, strict=True):
        path = write_legacy_h5(model, served / card[key]["file"])
        card[key].update(url=path.as_uri(), hash=hashlib.md5(path.read_bytes()).hexdigest())
    card.update(arch="zt_mobilenet", tag="test")
    registry = Registry(plugins=False)
    registry.register(card)
    monkeypatch.setattr(registry_module, "REGISTRY", registry)
    monkeypatch.setattr("zoo_transfer.recipes._build.get_card", registry.get)
    monkeypatch.setattr("zoo_transfer.cli.catalog.REGISTRY", registry)
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return registry.get("zt_mobilenet"), home


def _offline(monkeypatch, hang=False):
    def refuse(*args, **kwargs):
        if hang:
            time.sleep(60)
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("hang", [False, True])
def test_offline_imagenet_fails_fast_with_the_way_out(fresh_keras, monkeypatch, tmp_path, hang):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / f"zt-empty-{hang}"))
    _offline(monkeypatch, hang=hang)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        zoo_transfer.build("mobilenet_v3_small", num_classes=2)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5" in message
    assert "zt-empty" in message and "zoo-transfer fetch mobilenet_v3_small.a100" in message


def test_imagenet_download_cache_and_hash(fresh_keras, fake_zoo, monkeypatch):
    card, home = fake_zoo
    model = zoo_transfer.build(
        "zt_mobilenet", weights="imagenet", num_classes=3, input_shape=(96, 96, 3)
    )
    cached = home / "models" / card.weights_no_top.file
    assert cached.exists()
    # the cached file is used offline on the next build
    _offline(monkeypatch)
    again = zoo_transfer.build(
        "zt_mobilenet", weights="imagenet", num_classes=3, input_shape=(96, 96, 3)
    )
    np.testing.assert_array_equal(_conv1_of(model), _conv1_of(again))
    # a corrupt cached file is refused, named, and left in place
    data = bytearray(cached.read_bytes())
    data[-100] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(WeightsCorruptError, match="md5 check"):
        zoo_transfer.build("zt_mobilenet", weights="imagenet", num_classes=3)
    assert cached.read_bytes() == bytes(data)


def _conv1_of(model):
    return model.get_layer("zt_mobilenet").get_layer("conv1").kernel.numpy()


def test_fetch_cli_fills_a_cache_folder(fake_zoo, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from zoo_transfer.cli import cli

    target = tmp_path / "airgap"
    result = CliRunner().invoke(cli, ["fetch", "zt_mobilenet", "--to", str(target)])
    assert result.exit_code == 0, result.output
    card, _ = fake_zoo
    assert (target / "models" / card.weights_top.file).exists()
    assert (target / "models" / card.weights_no_top.file).exists()
    assert "hash ok" in result.output
    _offline(monkeypatch)
    result = CliRunner().invoke(cli, ["fetch", "resnet50", "--to", str(tmp_path / "x")])
    assert result.exit_code in (1, 2)


def test_legacy_file_for_another_width_lists_the_layers(
    fresh_keras, tmp_path, mobilenet_025_models, write_legacy_h5
):
    legacy = write_legacy_h5(mobilenet_025_models[0], tmp_path / "m025.h5")
    with pytest.raises(WeightsMismatchError, match=r"shapes differ: conv1: model \[\(3, 3, 3, 16"):
        zoo_transfer.build("mobilenet.a050_224", num_classes=2, weights=str(legacy))
    assert legacy.exists()


def test_efficientnet_weights_move_to_another_size_with_imagenet_structure(fresh_keras, tmp_path):
    """EfficientNet adds a Rescaling only for ImageNet weights and auto-names its
    Normalization layer; weights from a file must still land in the same structure."""
    keras = fresh_keras
    from zoo_transfer.recipes._backbone import _structure

    card = get_card("efficientnet_b0")
    source = _structure(card, include_top=False, input_shape=card.input_size)
    rng = np.random.default_rng(0)
    for v in source.weights:
        v.assign(rng.normal(size=v.shape).astype(v.dtype))
    path = tmp_path / "effb0.weights.h5"
    source.save_weights(path)
    model = zoo_transfer.build(
        "efficientnet_b0", num_classes=2, weights=str(path), input_shape=(96, 96, 3)
    )
    backbone = model.get_layer("efficientnet_b0")
    kinds = [type(layer).__name__ for layer in backbone.layers[1:4]]
    assert kinds == ["Rescaling", "Normalization", "Rescaling"]
    src_norm = next(x for x in source.layers if isinstance(x, keras.layers.Normalization))
    dst_norm = backbone.layers[2]
    for a, b in zip(src_norm.weights, dst_norm.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(
        source.get_layer("top_conv").kernel.numpy(), backbone.get_layer("top_conv").kernel.numpy()
    )
