"""Ctrl-C during a run stops it, even when the first KeyboardInterrupt is swallowed.

Python raises `KeyboardInterrupt` wherever the main thread is when SIGINT arrives. Some
library code catches every exception with a bare `except:` (Keras' TensorFlow backend
does so while it traces a function, which `ProgressiveResizing` makes happen at the
start of each new size), so a Ctrl-C at that moment vanished and the run went on to the
end. `interrupt_guard` remembers the signal as well: `StopOnInterrupt` raises it again at
the next batch or epoch end, where nothing swallows it. A second Ctrl-C acts at once.

```python
with interrupt_guard() as stop:
    model.fit(..., callbacks=[stop, ...])
```
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


def _callback_base() -> type:
    import keras

    return keras.callbacks.Callback


class _Flag:
    def __init__(self) -> None:
        self.raised = False


def stop_on_interrupt(flag: _Flag) -> Any:
    """A Keras callback raising `KeyboardInterrupt` at the next batch or epoch end once
    `flag.raised` is set."""

    class StopOnInterrupt(_callback_base()):
        def _check(self, *args: Any, **kwargs: Any) -> None:
            if flag.raised:
                raise KeyboardInterrupt

        on_train_batch_end = on_test_batch_end = on_epoch_begin = on_epoch_end = _check

    return StopOnInterrupt()


@contextlib.contextmanager
def interrupt_guard() -> Iterator[Any]:
    """Install the remembering SIGINT handler for the block; yields the callback to pass
    to `fit`. Outside the main thread (where handlers cannot be set) it only yields the
    callback, which then never fires."""
    flag = _Flag()
    callback = stop_on_interrupt(flag)
    if threading.current_thread() is not threading.main_thread():
        yield callback
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # the parent asked us to ignore Ctrl-C: keep that
        yield callback
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.raised:  # the second Ctrl-C: at once
            raise KeyboardInterrupt
        flag.raised = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield callback
    finally:
        signal.signal(signal.SIGINT, previous)
