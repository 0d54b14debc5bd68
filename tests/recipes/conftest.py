"""Helpers for the recipe tests: Keras application weight files made from real weights."""

from __future__ import annotations

from pathlib import Path

import pytest


def write_legacy_h5(model, path: Path) -> Path:
    """Write `model`'s weights in the layer-name keyed layout of Keras' application files."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{v.name}:0" for v in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n, v in zip(names, layer.weights, strict=True):
                group.create_dataset(n, data=v.numpy())
    return path


@pytest.fixture(name="write_legacy_h5")
def write_legacy_h5_fixture():
    return write_legacy_h5


@pytest.fixture(scope="module")
def mobilenet_025_models(shared_data):
    """Keras MobileNet 0.25/224 with the real ImageNet weights, with and without top."""
    import keras

    top = keras.applications.MobileNet(alpha=0.25, weights=None)
    top.load_weights(str(shared_data / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"))
    no_top = keras.applications.MobileNet(
        alpha=0.25, weights=None, include_top=False, input_shape=(224, 224, 3)
    )
    for layer in no_top.layers:
        if layer.weights:
            layer.set_weights(top.get_layer(layer.name).get_weights())
    return top, no_top
