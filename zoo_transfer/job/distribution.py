"""Where the job runs: the `tf.distribute` strategy for `--strategy`, which worker is the
chief (the one that writes the out folder), and the fixes Keras 3 needs to `fit` under
`MultiWorkerMirroredStrategy`.

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


def make_strategy(name: str) -> Any:
    """The `tf.distribute` strategy for `--strategy`."""
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
