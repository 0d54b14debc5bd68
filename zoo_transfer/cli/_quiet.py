"""TensorFlow's native start-up lines, kept out of the command line's output.

Importing TensorFlow prints absl/C++ lines straight to file descriptor 2 before any
Python logging is set up ("oneDNN custom operations are on", "Could not find cuda
drivers", and on a CPU machine `E0000 ... failed call to cuInit`). No Python setting
reaches them, so the commands that need TensorFlow import it once with descriptor 2
pointed at /dev/null, and set `TF_CPP_MIN_LOG_LEVEL=3` for what comes later. Set
`ZOO_TRANSFER_VERBOSE=1` (or pass `TF_CPP_MIN_LOG_LEVEL` yourself) to see them.

The same import also skips three optional modules that TensorFlow and Keras load at
start-up when they are installed, none of which a command uses (measured on a 2-core
machine with all three installed: about 1 s of the ~8 s import, on every command):
JAX (for TFLite's `experimental_from_jax`; it stays importable afterwards),
scikit-learn (Keras' scikit-learn wrappers) and `matplotlib.pyplot` (Keras' image
gallery) are loaded on first use instead. This is for the command's own process
only; `import zoo_transfer` in your program changes nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator

# Imported by TensorFlow and Keras at start-up when installed, used by no command.
_SKIPPED = ("jax", "sklearn", "matplotlib.pyplot")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (when it is the backend) without its native start-up lines."""
    if os.environ.get("ZOO_TRANSFER_VERBOSE"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    if importlib.util.find_spec("tensorflow") is None:
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                with _without_optional_modules():
                    import tensorflow  # noqa: F401
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


@contextlib.contextmanager
def _without_optional_modules() -> Iterator[None]:
    """Within: importing JAX, scikit-learn or pyplot fails, so TensorFlow and Keras
    leave out their optional hooks for them. Afterwards all three import as usual."""
    blocked = [name for name in _SKIPPED if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
