"""A Ctrl-C that library code swallows (a bare `except:`, as Keras has while tracing)
still stops the run at the next batch end; without the guard the fit ran to its end."""

from __future__ import annotations

import os
import signal

import keras
import numpy as np
import pytest

from zoo_transfer.job.interrupt import interrupt_guard


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Python's own Ctrl-C handler for the test, even when the test run itself ignores
    SIGINT (started as a background job by a shell without job control, `cmd &`): then
    the guard rightly keeps ignoring it, which `test_an_ignored_ctrl_c_stays_ignored` checks."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class _SwallowedCtrlC(keras.callbacks.Callback):
    """Sends SIGINT to this process inside a bare `except:` at the end of batch 1."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.batches == 1:
            try:
                os.kill(os.getpid(), signal.SIGINT)  # the handler raises inside this try
            except:  # noqa: E722 - what the guard exists for
                pass


def _fit(callbacks) -> int:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.zeros((64, 4), "float32"), np.zeros((64, 2), "float32")
    swallow = _SwallowedCtrlC()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[*callbacks, swallow])
    return swallow.batches


def test_a_swallowed_ctrl_c_stops_at_the_next_batch_end():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with interrupt_guard() as stop:
            _fit([stop])
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_without_the_guard_the_swallowed_ctrl_c_is_lost():
    assert _fit([]) == 16  # both epochs of 8 batches ran: what the guard prevents


def test_an_ignored_ctrl_c_stays_ignored():
    """`nohup`, or a background job of a script: the parent said to ignore Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupt_guard() as stop:
        assert _fit([stop]) == 16  # the whole fit ran
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
