"""A small transfer model and data for the callback tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def small_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, 16)
    return x, y


@pytest.fixture
def small_model(fresh_keras):
    import zoo_transfer

    fresh_keras.utils.set_random_seed(0)
    return zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(32, 32, 3))
