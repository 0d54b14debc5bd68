"""Where the job runs: the strategy for `--strategy`, which worker is the chief (the one
that writes the out folder), and the fixes Keras 3 needs to `fit` under
`MultiWorkerMirroredStrategy`.

On the TensorFlow backend `--strategy` is a `tf.distribute` strategy; on JAX it is
`keras.distribution.DataParallel` over the local devices (`JaxStrategy`): the
variables are replicated, every batch is split across the devices, and XLA all-reduces
the gradients.

Everything about TensorFlow's distribution is here, so the run
(`zoo_transfer.job.runner`) only asks for a strategy and `_is_chief()`, and enters
`strategy.scope()`. TensorFlow and Keras are imported inside the functions: importing
the job stays free of them.
"""

from __future__ import annotations

import json
import os
from typing import Any

from zoo_transfer.errors import BuildArgumentError


def _is_chief() -> bool:
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = tf_config.get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
    has_chief = "chief" in tf_config.get("cluster", {})
    return kind is None or kind == "chief" or (kind == "worker" and index == 0 and not has_chief)


class JaxStrategy:
    """`--strategy` on the JAX backend: `keras.distribution.DataParallel` over `devices`,
    or one device (no distribution) when `devices` is None.

    `scope()` sets the distribution: enter it to build the model (variables are created
    replicated) and again to `fit` (batches are split across the devices). Each batch
    must divide evenly across the devices.
    """

    def __init__(self, devices: Any = None):
        import keras

        self.devices = list(devices) if devices else []
        self.distribution = (
            keras.distribution.DataParallel(devices=self.devices) if devices else None
        )
        self.num_replicas_in_sync = max(len(self.devices), 1)

    def scope(self) -> Any:
        import contextlib

        return contextlib.nullcontext() if self.distribution is None else self.distribution.scope()

    def check_batch_size(self, batch_size: int) -> None:
        n = self.num_replicas_in_sync
        if batch_size % n:
            raise BuildArgumentError(
                f"--batch-size {batch_size} does not split evenly across the {n} devices of "
                f"--strategy on JAX (DataParallel). Use a multiple of {n}, e.g. "
                f"--batch-size {max(n, batch_size - batch_size % n)}."
            )


def _jax_strategy(name: str) -> JaxStrategy:
    import jax

    if name == "multiworker":
        raise BuildArgumentError(
            "--strategy multiworker is a tf.distribute strategy; on the JAX backend "
            "zoo-transfer train runs on the devices of one host (--strategy mirrored). Use "
            "KERAS_BACKEND=tensorflow for several workers."
        )
    devices = jax.devices()
    if name == "tpu":
        if devices[0].platform != "tpu":
            raise BuildArgumentError(
                f"--strategy tpu: no TPU found; JAX sees {devices[0].platform} devices."
            )
        return JaxStrategy(devices)
    accelerators = devices[0].platform != "cpu"
    if name == "mirrored" or (name == "auto" and accelerators and len(devices) > 1):
        return JaxStrategy(devices if len(devices) > 1 else None)
    return JaxStrategy(None)


def fit_scope(strategy: Any) -> Any:
    """What `fit` runs under: the JAX distribution; nothing on TensorFlow, whose model
    keeps the strategy it was built under."""
    import contextlib

    return strategy.scope() if isinstance(strategy, JaxStrategy) else contextlib.nullcontext()


def make_strategy(name: str) -> Any:
    """The strategy for `--strategy`: a `tf.distribute` strategy, or on JAX a `JaxStrategy`."""
    import keras

    if keras.backend.backend() == "jax":
        return _jax_strategy(name)
    import tensorflow as tf

    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise BuildArgumentError(
                "--strategy multiworker needs TF_CONFIG naming the cluster and this worker, "
                'e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.NotFoundError) as err:
            raise BuildArgumentError(f"--strategy tpu: no TPU found ({err}).") from None
        return tf.distribute.TPUStrategy(resolver)
    if name == "mirrored" or (name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _multiworker_fixes(model: Any, strategy: Any, batch: Any) -> None:
    """Let Keras 3 `fit` run under `MultiWorkerMirroredStrategy` (keras-team/keras#20585).

    Keras 3.15 fails there in two places, both about logs, not about training: it
    builds the model from a batch averaged across workers (`strategy.reduce` of a
    per-replica batch, which MultiWorker cannot do eagerly), and it reduces scalar
    logs with `axis=0`. We build from a local batch and average the logs per worker.
    Gradients are still all-reduced across workers by TensorFlow's collective
    runtime: the multi-worker test checks that both workers end with equal weights.
    """
    import keras.src.backend.tensorflow.trainer as tf_trainer

    tf_trainer._collective_all_reduce_multi_worker = lambda strategy: False

    def build_locally(iterator: Any = None, data_batch: Any = None) -> None:
        with strategy.scope():
            model._symbolic_build(data_batch=batch)

    model._maybe_symbolic_build = build_locally
