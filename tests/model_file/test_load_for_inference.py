"""Class names inside `.keras` files, and `load_for_inference` with its errors."""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest

from zoo_transfer.errors import (
    BuildArgumentError,
    LabelMismatchError,
    ModelFileError,
    UnknownModelError,
    ZooTransferError,
)
from zoo_transfer.model_file import (
    LABELS_ENTRY,
    embed_labels,
    load_for_inference,
    read_labels,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny zoo model (MobileNetV3Small, random weights, 32 px, 3 classes) saved once."""
    import keras

    import zoo_transfer

    keras.utils.set_random_seed(0)
    model = zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("saved") / "plain.keras"
    model.save(path)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    return path, model.predict(x, verbose=0), x


@pytest.fixture
def keras_file(saved, tmp_path):
    """A fresh copy of the saved model, without labels, in its own folder."""
    path = tmp_path / "model.keras"
    path.write_bytes(saved[0].read_bytes())
    return path


def test_embedded_labels_round_trip_and_keras_still_loads_silently(saved, keras_file):
    import keras

    embed_labels(keras_file, ["cat", "dog", "émeu"])
    assert read_labels(keras_file) == ["cat", "dog", "émeu"]
    with zipfile.ZipFile(keras_file) as zf:
        names = zf.namelist()
    assert names.count(LABELS_ENTRY) == 1
    assert {"config.json", "metadata.json", "model.weights.h5"} <= set(names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.saving.load_model(keras_file)  # safe mode, no zoo_transfer objects
    assert [str(w.message) for w in caught] == []
    _, expected, x = saved
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_embedding_again_replaces_the_names(keras_file):
    embed_labels(keras_file, ["a", "b", "c"])
    embed_labels(keras_file, ("x", "y", "z"))
    assert read_labels(keras_file) == ["x", "y", "z"]
    with zipfile.ZipFile(keras_file) as zf:
        assert zf.namelist().count(LABELS_ENTRY) == 1
    assert not [p for p in keras_file.parent.iterdir() if p.suffix == ".tmp"]


def test_labels_json_beside_the_file_and_precedence(keras_file):
    assert read_labels(keras_file) is None
    beside = keras_file.parent / "labels.json"
    beside.write_text(json.dumps(["n0", "n1", "n2"]))
    assert read_labels(keras_file) == ["n0", "n1", "n2"]
    beside.write_text(json.dumps({"labels": ["m0", "m1", "m2"]}))
    assert read_labels(keras_file) == ["m0", "m1", "m2"]
    beside.write_text(json.dumps({"1": "k1", "0": "k0", "2": "k2"}))
    assert read_labels(keras_file) == ["k0", "k1", "k2"]
    embed_labels(keras_file, ["e0", "e1", "e2"])
    assert read_labels(keras_file) == ["e0", "e1", "e2"]  # the file's own names win
    beside.write_text("{not json")
    assert read_labels(keras_file) == ["e0", "e1", "e2"]


def test_load_for_inference_of_a_keras_file(keras_file):
    model, names, size = load_for_inference(keras_file)
    assert names == ["0", "1", "2"]  # no labels anywhere
    assert size == (32, 32)
    assert model.outputs[0].shape[-1] == 3
    embed_labels(keras_file, ["cat", "dog", "bird"])
    loaded = load_for_inference(str(keras_file))
    assert loaded.class_names == ["cat", "dog", "bird"]
    assert loaded.image_size == (32, 32)


def test_labels_that_do_not_fit_the_outputs(keras_file):
    embed_labels(keras_file, ["cat", "dog"])
    with pytest.raises(LabelMismatchError, match=r"3 outputs but its labels name 2 classes"):
        load_for_inference(keras_file)


def test_bad_labels_json_is_named(keras_file):
    (keras_file.parent / "labels.json").write_text("{not json")
    with pytest.raises(LabelMismatchError, match="labels.json is not valid JSON"):
        read_labels(keras_file)
    (keras_file.parent / "labels.json").write_text(json.dumps({"labels": [[1, 2]]}))
    with pytest.raises(LabelMismatchError, match="expected a JSON list of class names"):
        read_labels(keras_file)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope" / "model.keras"
    with pytest.raises(ModelFileError, match="No model file at .*nope/model.keras") as info:
        load_for_inference(missing)
    assert "zoo-transfer list" in str(info.value)
    assert isinstance(info.value, (OSError, ZooTransferError))


def test_weights_file_is_not_a_keras_model(tmp_path):
    h5 = tmp_path / "model.weights.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(ModelFileError, match=r"Expected a Keras 3 `.keras` file.*--weights"):
        load_for_inference(h5)


def test_not_a_zip_named_keras(tmp_path):
    fake = tmp_path / "fake.keras"
    fake.write_text("hello")
    with pytest.raises(ModelFileError, match="Expected a Keras 3 `.keras` file"):
        load_for_inference(fake)
    with pytest.raises(ModelFileError):
        embed_labels(fake, ["a"])


def test_zip_that_keras_cannot_load(tmp_path):
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", "{}")
    with pytest.raises(ModelFileError, match="could not be loaded as a Keras model"):
        load_for_inference(bad)


def test_unknown_zoo_name_suggests_names():
    with pytest.raises(UnknownModelError, match="Did you mean: .*mobilenet"):
        load_for_inference("mobilenett")


def test_weights_only_with_zoo_names(keras_file):
    with pytest.raises(BuildArgumentError, match="weights.*zoo names only"):
        load_for_inference(keras_file, weights="w.h5")


def test_bad_class_names_for_embed(keras_file):
    with pytest.raises(LabelMismatchError, match="Received: class_names='cat'"):
        embed_labels(keras_file, "cat")
    with pytest.raises(LabelMismatchError, match=r"Received: class_names=\[\]"):
        embed_labels(keras_file, [])
    assert read_labels(keras_file) is None  # the file is untouched


def test_zoo_name_with_real_weights_gives_imagenet_names(shared_data):
    weights = shared_data / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"
    model, names, size = load_for_inference("mobilenet.a025_224", weights=weights)
    assert size == (224, 224)
    assert len(names) == 1000 and names[0] == "tench"
    assert model.outputs[0].shape[-1] == 1000
