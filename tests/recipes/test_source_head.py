"""`feature_extractor(..., source_head=True)`: stage features and the pretrained classifier
in one pass; a weights file without the classifier is refused, never a random top."""

from __future__ import annotations

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer.errors import BuildArgumentError, WeightsMismatchError
from zoo_transfer.recipes import SOURCE_HEAD
from zoo_transfer.recipes.digitnet import DigitNet, demo_digits


@pytest.fixture(scope="module")
def images():
    return demo_digits(seed=0, train_per_class=2)[0].astype("float32")


def test_the_source_head_equals_the_pretrained_classifier(images):
    fx = zoo_transfer.feature_extractor("digitnet", cuts=["stage3"], source_head=True)
    assert set(fx.output) == {"stage3", SOURCE_HEAD}
    out = fx.predict_on_batch(images)
    classifier = zoo_transfer.build("digitnet", num_classes=None)
    np.testing.assert_allclose(out[SOURCE_HEAD], classifier.predict_on_batch(images), atol=1e-6)
    plain = zoo_transfer.feature_extractor("digitnet", cuts=["stage3"])
    np.testing.assert_allclose(out["stage3"], plain.predict_on_batch(images)["stage3"], atol=1e-6)
    assert out[SOURCE_HEAD].shape == (len(images), 5)


def test_weights_without_the_classifier_are_refused_for_the_classifier(tmp_path):
    path = tmp_path / "no_top.weights.h5"
    DigitNet(include_top=False, weights="imagenet").save_weights(str(path))
    with pytest.raises(WeightsMismatchError, match="without its classifier"):
        zoo_transfer.build("digitnet", num_classes=None, weights=str(path))
    with pytest.raises(WeightsMismatchError, match="without its classifier"):
        zoo_transfer.feature_extractor("digitnet", weights=str(path), source_head=True)
    zoo_transfer.feature_extractor("digitnet", cuts=["stage3"], weights=str(path))  # fine


def test_a_cut_named_like_the_source_head_is_refused():
    with pytest.raises(BuildArgumentError, match="collide"):
        zoo_transfer.feature_extractor("digitnet", cuts=[SOURCE_HEAD], source_head=True)
