"""LEEP: the formula on a hand example, its bounds, and its refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zoo_transfer.errors import ScoreInputError, TooFewImagesError
from zoo_transfer.transferability import leep

# four images, a source head over two classes, two target classes
PROBS = [[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]]
LABELS = [0, 0, 1, 1]


def test_leep_equals_the_formula_on_a_hand_example():
    # P(y, z) = mean_i theta_iz [y_i = y]
    joint = {(0, 0): (0.9 + 0.8) / 4, (0, 1): (0.1 + 0.2) / 4}
    joint |= {(1, 0): (0.1 + 0.3) / 4, (1, 1): (0.9 + 0.7) / 4}
    marginal = {z: joint[(0, z)] + joint[(1, z)] for z in (0, 1)}  # P(z)
    expected = 0.0
    for theta, y in zip(PROBS, LABELS, strict=True):
        expected += math.log(sum(joint[(y, z)] / marginal[z] * theta[z] for z in (0, 1)))
    expected /= 4
    assert expected == pytest.approx(-0.342616, abs=1e-6)  # worked out on paper too
    assert leep(PROBS, LABELS) == pytest.approx(expected, rel=1e-12)


def test_a_head_that_already_separates_the_classes_scores_higher():
    sharp = [[0.99, 0.01], [0.98, 0.02], [0.01, 0.99], [0.02, 0.98]]
    blind = [[0.5, 0.5]] * 4  # says nothing about the image
    assert leep(sharp, LABELS) > leep(PROBS, LABELS) > leep(blind, LABELS)
    assert leep(blind, LABELS) == pytest.approx(math.log(0.5))  # the class prior
    assert leep(sharp, LABELS) < 0


def test_the_order_of_source_classes_does_not_matter():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=40)
    labels = np.arange(40) % 4
    perm = rng.permutation(7)
    assert leep(probs[:, perm], labels) == pytest.approx(leep(probs, labels), rel=1e-12)


def test_bad_input_is_named():
    with pytest.raises(ScoreInputError, match="4 rows of source_probs and 3 labels"):
        leep(PROBS, LABELS[:3])
    with pytest.raises(ScoreInputError, match=r"row 0 sums to 3.*softmax"):
        leep([[1.0, 2.0], *PROBS[1:]], LABELS)  # logits, not probabilities
    with pytest.raises(ScoreInputError, match="NaN"):
        leep([[np.nan, 0.5], *PROBS[1:]], LABELS)
    with pytest.raises(TooFewImagesError, match="Class 'cat' has 1 image"):
        leep(PROBS, [0, 0, 0, 1], class_names=["dog", "cat"])
