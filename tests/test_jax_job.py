"""The JAX job: `tests/jax` run by pytest in a process of its own, with KERAS_BACKEND=jax
and TensorFlow unimportable (in it and in every process it starts), as on the lent GPU
machines, which have JAX and no TensorFlow."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from no_tensorflow import no_tensorflow_env

ROOT = Path(__file__).resolve().parents[1]


def jax_job_env() -> dict[str, str]:
    """The environment of the JAX job: the backend, and the TensorFlow blocker."""
    return {**no_tensorflow_env("jax"), "ZOO_TRANSFER_JAX_JOB": "1", "JAX_PLATFORMS": "cpu"}


@pytest.mark.early
@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("jax") is None,
    reason="jax is not installed (pip install -e '.[test]' installs it)",
)
def test_the_jax_job_passes_with_tensorflow_unimportable():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/jax", "-q", "-n", "0", "-p", "no:cacheprovider",
         "--durations=5", "-rs"],
        cwd=ROOT, env=jax_job_env(), capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    tail = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary), tail
    assert "skipped" not in summary and "failed" not in summary, tail
    print(summary)
