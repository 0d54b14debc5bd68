"""`--strategy` on JAX: which strategies exist there, and the errors that name the fix."""

from __future__ import annotations

import pytest


def test_strategies_on_one_cpu_device():
    from zoo_transfer.job import make_strategy
    from zoo_transfer.job.distribution import JaxStrategy

    for name in ("auto", "mirrored"):
        strategy = make_strategy(name)
        assert isinstance(strategy, JaxStrategy)
        assert strategy.distribution is None and strategy.num_replicas_in_sync == 1
        with strategy.scope():  # no distribution: a no-op scope
            pass


def test_strategies_that_do_not_exist_on_jax_say_so():
    from zoo_transfer import ArgumentError
    from zoo_transfer.job import make_strategy

    with pytest.raises(ArgumentError, match="multiworker is a tf.distribute strategy"):
        make_strategy("multiworker")
    with pytest.raises(ArgumentError, match="no TPU found; JAX sees cpu devices"):
        make_strategy("tpu")


def test_batch_size_must_split_over_the_devices():
    import jax

    from zoo_transfer import ArgumentError
    from zoo_transfer.job.distribution import JaxStrategy

    strategy = JaxStrategy(None)
    strategy.check_batch_size(7)  # one device: any batch
    strategy.num_replicas_in_sync = 2  # as DataParallel over 2 devices
    strategy.devices = [jax.devices()[0]] * 2
    strategy.check_batch_size(8)
    with pytest.raises(
        ArgumentError, match="--batch-size 7 does not split evenly .* e.g. --batch-size 6"
    ):
        strategy.check_batch_size(7)


def test_split_evenly_cuts_only_the_last_batch():
    import numpy as np

    from zoo_transfer.data import ResizableArrays

    x, y = np.zeros((21, 8, 8, 3), "float32"), np.arange(21)
    source = ResizableArrays(x, y, size=8, batch_size=8, shuffle=False, drop_remainder=False)
    assert source.split_evenly(2) == 1  # 21 = 8 + 8 + 5: the last batch keeps 4
    assert len(source) == 3 and [len(source.batch(i)[1]) for i in range(3)] == [8, 8, 4]
    assert source.in_order().batch(2)[1].tolist() == [16, 17, 18, 19, 20]  # every image
    assert source.split_evenly(8) == 5 and len(source) == 2  # nothing left of the last
