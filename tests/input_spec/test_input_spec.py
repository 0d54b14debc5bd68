"""The input spec: resolved from the card, validated, and carried by the `.keras` file."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from zoo_transfer.errors import ArgumentError, ModelFileError
from zoo_transfer.input_spec import DEFAULT_SIDE, InputSpec
from zoo_transfer.model_file import (
    LABELS_ENTRY,
    embed_labels,
    load_for_inference,
    read_input_spec,
)
from zoo_transfer.registry import get_card


def test_the_spec_comes_from_the_card():
    card = get_card("mobilenet.a025_224")
    spec = InputSpec.from_card(card)
    assert spec.side == card.input_size[0] == 224
    assert spec.interpolation == card.preprocessing.interpolation
    assert spec.crop_fraction == card.preprocessing.crop_pct
    assert spec.antialias is False  # what training has always done
    assert InputSpec.from_card(card, side=128).image_size == (128, 128)
    assert spec.with_side(96) == InputSpec(96, spec.interpolation, False, spec.crop_fraction)


def test_round_trip_and_bad_values_name_the_field():
    spec = InputSpec(side=40, interpolation="nearest", antialias=True, crop_fraction=0.9)
    assert InputSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    for bad, word in (
        ({"side": 0}, "side"),
        ({"side": 32, "interpolation": "cubic"}, "interpolation"),
        ({"side": 32, "crop_fraction": 1.5}, "crop fraction"),
        ({"side": 32, "antialias": "yes"}, "antialias"),
        ({"interpolation": "bilinear"}, "side"),
    ):
        with pytest.raises(ArgumentError, match=word):
            InputSpec.from_dict(bad)


def test_of_model_reads_the_backbone_card(fresh_keras):
    import keras

    import zoo_transfer

    model = zoo_transfer.build("digitnet", 3, weights=None)
    assert InputSpec.of_model(model) == InputSpec.from_card(get_card("digitnet"), 32)
    inputs = keras.Input((None, None, 3))
    plain = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    assert InputSpec.of_model(plain) == InputSpec(side=DEFAULT_SIDE)  # no card: defaults


@pytest.fixture
def saved(fresh_keras, tmp_path):
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    path = tmp_path / "m.keras"
    model.save(path)
    return path


def test_the_model_file_carries_the_spec(saved):
    spec = InputSpec(side=48, interpolation="nearest", crop_fraction=0.95)
    embed_labels(saved, ["a", "b"], input_spec=spec)
    assert read_input_spec(saved) == spec
    loaded = load_for_inference(saved)
    assert loaded.input_spec == spec and loaded.image_size == (48, 48)
    model, names, size = loaded  # 0.1's three-tuple still unpacks
    assert names == ["a", "b"] and size == (48, 48)
    with zipfile.ZipFile(saved) as zf:  # and 0.1's readers still find the side
        assert json.loads(zf.read(LABELS_ENTRY))["image_size"] == 48


def test_a_file_from_0_1_gives_its_side_with_the_defaults(saved):
    embed_labels(saved, ["a", "b"], image_size=40)
    assert read_input_spec(saved) == InputSpec(side=40)
    with pytest.raises(ArgumentError, match="disagrees"):
        embed_labels(saved, ["a", "b"], image_size=40, input_spec=InputSpec(side=32))


def test_a_plain_keras_file_has_no_spec_and_a_broken_one_is_named(saved, tmp_path):
    assert read_input_spec(saved) is None
    embed_labels(saved, ["a", "b"], input_spec=InputSpec(side=32))
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == LABELS_ENTRY:
                data = json.dumps({"labels": ["a", "b"], "input": {"side": -3}}).encode()
            dst.writestr(info, data)
    with pytest.raises(ModelFileError, match="input spec"):
        read_input_spec(broken)
    assert np.isfinite(read_input_spec(saved).crop_fraction)
