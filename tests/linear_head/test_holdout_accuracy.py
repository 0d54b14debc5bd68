"""`holdout_accuracy`: a converged probe scored on images it was not fitted on."""

from __future__ import annotations

import numpy as np
import pytest

from zoo_transfer.errors import ArgumentError
from zoo_transfer.linear_head import holdout_accuracy, stratified_fifth


def _task(noise: float, n: int = 200, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return np.eye(k)[y] @ rng.normal(size=(k, 16)) + noise * rng.normal(size=(n, 16)), y


def test_separable_features_score_1_and_labels_lost_score_near_chance():
    x, y = _task(noise=0.05)
    assert holdout_accuracy(x, y, 4) == 1.0
    lost = np.random.default_rng(1).permutation(y)
    assert holdout_accuracy(x, lost, 4) < 0.5  # chance is 0.25 (40 held-out images)


def test_the_held_out_images_are_a_stratified_fifth():
    _, y = _task(noise=1.0)
    held = stratified_fifth(y, 0)
    assert np.bincount(y[held]).tolist() == [10, 10, 10, 10]


def test_one_image_per_class_cannot_be_held_out():
    x, y = _task(noise=1.0, n=4)
    with pytest.raises(ArgumentError, match="one per class"):
        holdout_accuracy(x, y, 4)
