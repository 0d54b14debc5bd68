"""Saving models for use: plain Keras `.keras` files that load anywhere, written atomically.

A model compiled for transfer learning carries zoo-transfer's optimizer
(`GroupedOptimizer`) and its compile settings; `model.save` writes both into the
`.keras` file, and `keras.saving.load_model` then fails in any process where
zoo-transfer's classes are not registered ("Could not locate class
'GroupedOptimizer'"). The files a user gets (`final.keras`, `best.keras`,
`interrupted.keras`) are for inference and deployment, so they hold the architecture
and the weights only, made of core Keras layers: they load with
`keras.saving.load_model(path)` (safe mode on) in a process that never imports
zoo_transfer, and give the same predictions. The training state (optimizer slots, step
counters, epoch) lives in the run's `backup/` folder, which `--resume` reads.

Every file is written to a temporary file beside its target and renamed into place, so
a kill or a full disk never leaves a half-written model where a good one was.

```python
from zoo_transfer.saving import save_for_inference
save_for_inference(model, "flowers.keras", class_names=["daisy", "roses"])
# elsewhere, without zoo_transfer:  keras.saving.load_model("flowers.keras")
```
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def inference_copy(model: Any) -> Any:
    """A copy of `model` with the same layers and weights, and no optimizer or compile state."""
    # From the architecture config alone: `keras.models.clone_model` would compile the
    # copy with the original's (zoo-transfer) optimizer again.
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def save_for_inference(
    model: Any,
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    image_size: int | None = None,
    input_spec: Any = None,
) -> Path:
    """Write `model` as a plain Keras `.keras` file (architecture and weights), atomically.

    Args:
        model: a built Keras model (compiled or not).
        path: the `.keras` file to write; an existing file is replaced only once the new
            one is complete.
        class_names: `list[str]`, embedded in the file (`zoo_transfer.model_file.read_labels`).
        image_size: the side the model was trained at, embedded with the names.
        input_spec: `zoo_transfer.input_spec.InputSpec`, how training read its images,
            embedded with the names (`read_input_spec`); it says the side too.

    Returns the path written.
    """
    from zoo_transfer.input_spec import fixed_side
    from zoo_transfer.model_file import embed_labels

    side = fixed_side(model)
    if side is not None and input_spec is not None and input_spec.side != side:
        # a model built for one size (a transformer of a progressive run) takes no other
        input_spec = input_spec.with_side(side)
    if side is not None and image_size is not None:
        image_size = side
    target = Path(path)
    ensure_room(target.parent, model)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".keras", dir=target.parent)
    os.close(fd)
    try:
        with failed_writes_closed(target):
            inference_copy(model).save(tmp)
            if class_names is not None:
                embed_labels(tmp, class_names, image_size=image_size, input_spec=input_spec)
            os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def ensure_room(folder: str | os.PathLike, model: Any, *, optimizer: bool = False) -> None:
    """Raise `OSError(ENOSPC)` naming `folder` when it has no room for `model`'s weights
    (and its optimizer's): HDF5 left holding a half-written file can crash the process
    as it shuts down, so a disk that is already full is refused before a byte is written.
    """
    import numpy as np
    from keras.backend import standardize_dtype

    variables = list(model.weights)
    if optimizer and getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    total = sum(
        math.prod(int(d) for d in v.shape) * np.dtype(standardize_dtype(v.dtype)).itemsize
        for v in variables
    )
    need = int(total * 1.1) + 256 * 1024  # headers, names, the zip of a .keras file
    if shutil.disk_usage(folder).free < need:
        raise OSError(
            errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({need:,} bytes needed)", str(folder)
        )


@contextlib.contextmanager
def failed_writes_closed(target: str | os.PathLike) -> Iterator[None]:
    """Around a write of `target`: an `OSError` comes out as `OSError(errno, text, target)`,
    without h5py's "Exception ignored" tracebacks printed while it fails.

    When h5py cannot write (a full disk), closing the half-written file fails too and h5py
    reports that through `sys.unraisablehook`; those reports are dropped here, and the
    error names `target` with the plain reason (e.g. "No space left on device"). HDF5 may
    still report the file at interpreter exit: `ensure_room` refuses a full disk before
    a write starts, so that only happens when the disk fills during the write.
    """
    hook = sys.unraisablehook

    def quiet(unraisable: Any) -> None:
        if "h5py" not in repr(unraisable.object):
            hook(unraisable)

    sys.unraisablehook = quiet
    try:
        yield
    except OSError as err:
        code = err.errno
        raise OSError(code, os.strerror(code) if code else "write failed", str(target)) from None
    finally:
        sys.unraisablehook = hook


def best_model_checkpoint(
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    image_size: int | None = None,
    input_spec: Any = None,
    monitor: str = "val_accuracy",
    best: float | None = None,
    since_epoch: int = 0,
) -> Any:
    """A callback that saves the model with `save_for_inference` when `monitor` improves.

    Like `keras.callbacks.ModelCheckpoint(save_best_only=True)` for a metric where
    higher is better, but the file is plain Keras and written atomically. `best` is the
    best value of earlier epochs (a resumed run), so a worse epoch never replaces it.
    Epochs before `since_epoch` (0-based) are not candidates (a transformer's epochs at
    sizes before the last of a progressive run).
    """
    import keras

    class BestModel(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best = -math.inf if best is None else float(best)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            value = (logs or {}).get(monitor)
            if (
                epoch < since_epoch
                or value is None
                or not math.isfinite(float(value))
                or float(value) <= self.best
            ):
                return
            self.best = float(value)
            save_for_inference(
                self.model,
                path,
                class_names=class_names,
                image_size=image_size,
                input_spec=input_spec,
            )

    return BestModel()
