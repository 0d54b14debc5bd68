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
    `tests/jax/site/sitecustomize.py` on PYTHONPATH, switched on, and `backend`.

    On JAX, XLA's CPU backend compiles at optimisation level 0 (`XLA_FLAGS`): these
    processes compile many small functions and run each a few times, so compiling is
    most of their time (the JAX job: 186 s -> 144 s). The level changes how fast the
    compiled code runs, not the arithmetic (XLA's fast math stays off, its default).
    """
    site = str(ROOT / "tests" / "jax" / "site")
    path = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "ZOO_TRANSFER_BLOCK_TF": "1",
        "PYTHONPATH": path,
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    if backend == "jax":
        flags = env.get("XLA_FLAGS", "")
        if "xla_backend_optimization_level" not in flags:
            env["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()
    return env
