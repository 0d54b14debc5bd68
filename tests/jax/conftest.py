"""The JAX test job: run by `tests/test_jax_job.py` in a process with KERAS_BACKEND=jax
where importing TensorFlow fails; the main test run does not collect this folder."""

from __future__ import annotations

import importlib
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _jax_without_tensorflow():
    import keras

    assert keras.backend.backend() == "jax", "the JAX job runs with KERAS_BACKEND=jax"
    with pytest.raises(ImportError, match="blocked"):
        importlib.import_module("tensorflow")
    yield
    import sys

    assert "tensorflow" not in sys.modules


def pytest_report_header(config):
    return f"JAX job: KERAS_BACKEND={os.environ.get('KERAS_BACKEND')}, TensorFlow blocked"
