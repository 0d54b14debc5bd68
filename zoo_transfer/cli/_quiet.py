"""TensorFlow's native start-up lines, kept out of the command line's output.

Importing TensorFlow prints absl/C++ lines straight to file descriptor 2 before any
Python logging is set up ("oneDNN custom operations are on", "Could not find cuda
drivers", and on a CPU machine `E0000 ... failed call to cuInit`). No Python setting
reaches them, so the commands that need TensorFlow import it once with descriptor 2
pointed at /dev/null, and set `TF_CPP_MIN_LOG_LEVEL=3` for what comes later. Set
`ZOO_TRANSFER_VERBOSE=1` (or pass `TF_CPP_MIN_LOG_LEVEL` yourself) to see them.
"""

from __future__ import annotations

import importlib.util
import os


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
                import tensorflow  # noqa: F401
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)
