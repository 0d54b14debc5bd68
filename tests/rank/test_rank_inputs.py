"""`rank`'s inputs: missing weights, weights without the classifier, Splits, bad arguments."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from zoo_transfer.data import load
from zoo_transfer.errors import (
    ArgumentError,
    DataError,
    TooFewImagesError,
    UnknownModelError,
)
from zoo_transfer.rank import rank, resolve_models
from zoo_transfer.recipes.digitnet import demo_digits

MISSING = "mobilenet_v3_small.a100"  # no weights in an empty Keras cache, and no network


def offline() -> bool:
    """Whether Keras' weights host is unreachable (then missing weights stay missing)."""
    try:
        with socket.create_connection(("storage.googleapis.com", 443), timeout=2):
            return False
    except OSError:
        return True


@pytest.fixture(scope="module")
def digits():
    x, y, _, _, _ = demo_digits(seed=0, train_per_class=12)
    return x, y


@pytest.fixture(scope="module")
def plain(digits):
    """DigitNet with its shipped weights, ranked once."""
    return rank(digits, "digitnet", progress=False).rows[0]


def test_a_model_with_missing_weights_is_reported_and_the_others_ranked(
    digits, tmp_path, monkeypatch, plain
):
    if not offline():
        pytest.skip("online: the weights would be downloaded, not missing")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-cache"))
    result = rank(digits, ["digitnet", MISSING], controls=True, progress=False)
    assert [r.model for r in result.rows] == ["digitnet.digits04", "digitnet.digits04", MISSING]
    assert result.best.logme == pytest.approx(plain.logme, rel=1e-6)
    (failed,) = result.failed
    assert failed.logme is None and failed.leep is None
    assert failed.error.startswith(f"{MISSING}: ")
    assert f"--weights {MISSING}=FILE" in failed.error  # the fix
    assert f"not ranked: {MISSING}" in result.to_table()
    row = next(r for r in result.to_dict()["models"] if r["model"] == MISSING)
    assert row["rank"] is None and row["error"] == failed.error
    # no control beside a model that could not be scored
    assert sum(r.model == MISSING for r in result.rows) == 1


def test_weights_without_the_classifier_give_logme_but_no_leep(digits, tmp_path, plain):
    from zoo_transfer.recipes.digitnet import DigitNet

    path = tmp_path / "digitnet_no_top.weights.h5"
    DigitNet(include_top=False, weights="imagenet").save_weights(str(path))
    (row,) = rank(digits, "digitnet", weights={"DigitNet": path}, progress=False).rows
    assert row.error is None and row.leep is None and plain.leep is not None
    assert row.logme == pytest.approx(plain.logme, rel=1e-6)  # the same trunk
    assert row.weights == str(path)


def _head_input(digits, **head):
    """What the new head of `build(..., **head)` reads, computed by Keras, by hand."""
    import keras

    import zoo_transfer

    x, _ = digits
    model = zoo_transfer.build("digitnet", 5, input_shape=(32, 32, 3), **head)
    reads = keras.Model(model.input, model.get_layer("head_logits").input)
    return np.asarray(reads.predict(np.asarray(x, "float32"), verbose=0))


def test_logme_scores_what_the_default_head_reads_or_the_trunk(digits, plain):
    """`features="head"` (the default) scores the features `train`'s default head fits
    its probe on (three stages, average and max pooled, joined as `head_concat` joins
    them); `"trunk"` the feature layer's average pool. Each equals LogME on the tensors
    Keras feeds those heads."""
    from zoo_transfer.recipes import LP_FT_HEAD
    from zoo_transfer.transferability import logme

    _, y = digits
    head = _head_input(digits, **LP_FT_HEAD)
    assert plain.features == "head" and plain.feature_size == head.shape[1]
    # standardised by default, as the probe fits them
    assert plain.standardized is True
    assert plain.logme == pytest.approx(logme(head, y, standardize=True), rel=1e-5)
    (raw,) = rank(digits, "digitnet", standardize=False, progress=False).rows
    assert raw.standardized is False and raw.feature_size == head.shape[1]
    assert raw.logme == pytest.approx(logme(head, y), rel=1e-5)
    assert abs(raw.logme - plain.logme) > 1e-3  # the two are different scores
    (trunk,) = rank(digits, "digitnet", features="trunk", progress=False).rows
    pooled = _head_input(digits)
    assert trunk.features == "trunk" and trunk.feature_size == pooled.shape[1] < head.shape[1]
    assert trunk.logme == pytest.approx(logme(pooled, y, standardize=True), rel=1e-5)
    table = rank(digits, "digitnet", progress=False).to_table()
    assert f"{head.shape[1]} head " in table and " raw " not in table
    raw_table = rank(digits, "digitnet", standardize=False, progress=False).to_table()
    assert f"{head.shape[1]} head raw" in raw_table
    with pytest.raises(ArgumentError, match="features to be one of head, trunk"):
        rank(digits, "digitnet", features="stage3", progress=False)


def test_a_splits_is_scored_whole_and_keeps_its_size(digits, plain):
    x, y = digits
    splits = load((x, y), image_size=32, validation_split=0.25, augment="light")
    (row,) = rank(splits, "digitnet", progress=False).rows
    assert row.n_images == len(y) == splits.num_train + splits.num_val
    assert row.logme == pytest.approx(plain.logme, rel=1e-6)  # order does not matter
    rank(splits, "digitnet", image_size=40, progress=False)
    assert int(splits.train_images.size.numpy()) == 32  # set back after ranking at 40


def test_a_class_with_one_image_is_named_before_any_model_runs(tmp_path, make_folder):
    root = make_folder(tmp_path / "data", per_class=3, classes=3)
    for extra in sorted((root / "6").glob("*.png"))[1:]:
        extra.unlink()
    with pytest.raises(TooFewImagesError, match=r"Class '6' has 1 image") as info:
        rank(root, "digitnet", progress=False)
    assert info.value.class_name == "6"
    x = np.zeros((5, 32, 32, 3), "uint8")
    with pytest.raises(TooFewImagesError, match="Class 1 has 1 image"):
        rank((x, np.array([0, 0, 1, 2, 2])), "digitnet", progress=False)


def test_a_folder_of_splits_is_refused(tmp_path, make_folder):
    make_folder(tmp_path / "data" / "train", per_class=2, classes=2)
    make_folder(tmp_path / "data" / "val", per_class=2, classes=2)
    with pytest.raises(DataError, match=r"split folders \['train', 'val'\].*data/train"):
        rank(tmp_path / "data", "digitnet", progress=False)


def test_models_and_weights_arguments_are_checked(digits, tmp_path):
    assert resolve_models(["DigitNet", "digitnet", "mobilenet.a025_1*"]) == [
        "digitnet.digits04", "mobilenet.a025_128", "mobilenet.a025_160", "mobilenet.a025_192",
    ]  # fmt: skip
    with pytest.raises(ArgumentError, match="No model matches the pattern 'nomodel\\*'"):
        rank(digits, "nomodel*", progress=False)
    with pytest.raises(UnknownModelError, match="digitnt"):
        rank(digits, ["digitnt"], progress=False)
    with pytest.raises(ArgumentError, match="'resnet50'.*not among the models ranked"):
        rank(digits, "digitnet", weights={"resnet50": None}, progress=False)
    missing = tmp_path / "nothing.weights.h5"
    with pytest.raises(ArgumentError, match=f"digitnet.digits04.*{missing}.*does not exist"):
        rank(digits, "digitnet", weights={"digitnet": missing}, progress=False)
    with pytest.raises(ArgumentError, match="image_size"):
        rank(digits, "digitnet", image_size=0, progress=False)
