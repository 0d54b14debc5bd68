"""`no_tensorflow_env`: the environment of a process where `import tensorflow` fails.

A module of its own, not in `conftest.py`: several conftest files exist, so
`from conftest import ...` would find whichever was imported first.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def no_tensorflow_env(backend: str = "jax") -> dict[str, str]:
    """The environment of a process (and its children) where `import tensorflow` fails:
    `tests/jax/site/sitecustomize.py` on PYTHONPATH, switched on, and `backend`."""
    site = str(ROOT / "tests" / "jax" / "site")
    path = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "KERAS_BACKEND": backend,
        "ZOO_TRANSFER_BLOCK_TF": "1",
        "PYTHONPATH": path,
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
