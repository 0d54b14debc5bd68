"""Cached-feature head training: run the frozen trunk once, then train the head on its output.

When nothing before the head can change during `fit` (the backbone and the `preprocess`
layer are frozen, no augmentation, one image size, no unfreeze schedule), every epoch of
a plain `fit` recomputes the same backbone features. `fit_cached_head` computes them
once and trains only the head on them, usually 10-100x faster per epoch on a CPU.

The model is split and its features computed and stored by `zoo_transfer.features`
(`split_head`, memory or raw files under `cache_dir`, `features-train.bin`,
`features-val.bin`, `storage="memory"` or `"disk"` to force one). The files are deleted
when `fit_cached_head` returns (they are cheap to recompute and may be large); a
`cache_dir` it had to create is removed with them.

Training. The head model is compiled with `model`'s own optimizer object (so its state,
and learning-rate changes made by callbacks, are those a plain `fit` would leave) and
with `model`'s loss and metrics, so the history has the same keys (`loss`, `accuracy`,
`val_loss`, `val_accuracy`). The callbacks see `model` itself as `self.model`:
`ModelCheckpoint` saves the full model, `EarlyStopping` can stop training, and
`BackupAndRestore` restores the full model and its epoch. Batches are shuffled every
epoch by a permutation fixed by `seed` and the epoch number.

```python
from zoo_transfer.cached import cached_head_applies, fit_cached_head
ok, why = cached_head_applies(model, splits, augment="none")
if ok:
    history = fit_cached_head(model, splits, epochs=10, cache_dir="runs/x/features")
```
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zoo_transfer.errors import BuildArgumentError
from zoo_transfer.features import (
    STORAGES,
    FeatureStorage,
    compute_features,
    dataset_batches,
    guess_batch_size,
    is_splits,
    split_head,
    trunk_problem,
)


# --------------------------------------------------------------------- when it applies
def _sizes(progressive: Any) -> list[int]:
    if progressive is None:
        return []
    if isinstance(progressive, Mapping):
        return [int(v) for v in progressive.values()]
    if isinstance(progressive, (int, np.integer)):
        return [int(progressive)]
    return [int(v) for v in progressive]


def cached_head_applies(
    model: Any,
    splits_or_dataset: Any = None,
    *,
    augment: str,
    progressive: Sequence[int] | Mapping[int, int] | None = None,
    unfreeze: Mapping[int, str] | None = None,
) -> tuple[bool, str]:
    """Whether `fit_cached_head` trains `model` exactly as a plain `fit` would.

    True only when nothing before the head can change or be random during training:
    the `preprocess` layer and the whole backbone have no trainable weights (and no
    dropout or training-mode BatchNorm), augmentation is off, the image size is
    constant, no unfreeze schedule is pending, the model runs on one replica, and the
    data is finite.

    Args:
        model: a compiled or uncompiled model from `zoo_transfer.build`.
        splits_or_dataset: what `fit` would get: a `zoo_transfer.data.Splits`, a
            `tf.data.Dataset`, a `ResizableImages`, an `(x, y)` pair, or `None`.
        augment: the augmentation preset (`"none"`, `"light"`, ...).
        progressive: image sizes (a list, or an `{epoch: size}` schedule); more than
            one distinct size means the features change between epochs.
        unfreeze: a `GradualUnfreezing` schedule `{epoch: stage}`; any entry rules it out.

    Returns:
        `(applies, reason)`; `reason` says why not, for a log line (`""` when it applies).

    ```python
    ok, why = cached_head_applies(model, splits, augment="light")
    # (False, "augmentation 'light' is on: ...")
    ```
    """
    if augment not in (None, "none"):
        return False, (
            f"augmentation {augment!r} is on: augmented images give new features every "
            "epoch (use augment='none' to train on cached features)"
        )
    sizes = _sizes(progressive)
    if len(set(sizes)) > 1:
        return False, (
            f"progressive resizing {sorted(set(sizes))} changes the image size, and with it "
            "the features, between epochs"
        )
    if unfreeze:
        stages = ", ".join(str(v) for v in dict(unfreeze).values())
        return False, f"an unfreeze schedule trains the backbone during the run ({stages})"
    try:
        trunk, head = split_head(model)
    except BuildArgumentError as exc:
        return False, str(exc)
    problem = trunk_problem(trunk)
    if problem:
        return False, problem
    if not head.trainable_weights:
        return False, "the head has no trainable weights, so there is nothing to train"
    strategy = getattr(model, "distribute_strategy", None)
    replicas = getattr(strategy, "num_replicas_in_sync", 1)
    import keras

    distribution = keras.distribution.distribution()  # JAX: DataParallel
    if distribution is not None:
        replicas = max(replicas, int(distribution.device_mesh.devices.size))
    if replicas > 1:
        return False, f"the model is distributed over {replicas} replicas"
    data = getattr(splits_or_dataset, "train", splits_or_dataset)
    cardinality = dataset_batches(data)
    if cardinality == "infinite":
        return False, "the training data repeats forever; pass a finite dataset"
    return True, ""


def _build_for_training(model: Any, first: tuple[np.ndarray, np.ndarray]) -> None:
    """Build `model`'s compiled metrics and loss as its own `fit` would.

    Callbacks read them from `model` (e.g. `ModelCheckpoint(monitor="val_accuracy")`
    asks the accuracy metric whether higher is better), but only the head model runs.
    """
    build = getattr(model, "_symbolic_build", None)
    if build is not None:
        build(data_batch=first)


# --------------------------------------------------------------------- training
def _epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the samples in `epoch`: a permutation fixed by `seed` and `epoch`."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(count)


def _feature_batches(
    features: np.ndarray, labels: np.ndarray, batch_size: int, *, seed: int | None
) -> Any:
    """A `keras.utils.PyDataset` over cached features; shuffled per epoch unless `seed` is None."""
    import keras

    class FeatureBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0
            self._order: np.ndarray | None = None
            self._order_epoch = -1

        def __len__(self) -> int:
            return math.ceil(len(features) / batch_size)

        def order(self) -> np.ndarray | None:
            if seed is None:
                return None
            if self._order_epoch != self.epoch:
                self._order = _epoch_order(len(features), seed, self.epoch)
                self._order_epoch = self.epoch
            return self._order

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            start = index * batch_size
            order = self.order()
            if order is None:
                picked = slice(start, start + batch_size)
            else:  # sorted: sequential reads from a memmap; the batch is the same set
                picked = np.sort(order[start : start + batch_size])
            return np.asarray(features[picked]), np.asarray(labels[picked])

    return FeatureBatches()


def _clone_leaf(value: Any) -> Any:
    """A fresh copy of a Keras metric or loss object (so two models share no state)."""
    import keras

    if isinstance(value, (keras.metrics.Metric, keras.losses.Loss)):
        try:
            return type(value).from_config(value.get_config())
        except Exception:  # a custom object without a usable config: share it
            return value
    return value


def _compile_head(model: Any, head: Any) -> None:
    import keras

    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise BuildArgumentError(
            f"Expected a compiled model. Received: model {model.name!r}, not compiled. Call "
            "model.compile(optimizer, loss, metrics=[...]) before fit_cached_head."
        )
    config = dict(getattr(model, "_compile_config", None).config)
    clone = lambda v: keras.tree.map_structure(_clone_leaf, v) if v is not None else None  # noqa: E731
    head.compile(
        optimizer=model.optimizer,  # the same object: its state is the full model's
        loss=clone(config.get("loss")),
        loss_weights=config.get("loss_weights"),
        metrics=clone(config.get("metrics")),
        weighted_metrics=clone(config.get("weighted_metrics")),
        run_eagerly=bool(config.get("run_eagerly")),
        steps_per_execution=config.get("steps_per_execution") or 1,
        jit_compile=model.jit_compile,
    )


def _sync_callback(model: Any, head: Any, batches: Any) -> Any:
    """Carries what callbacks set on `model` over to the head model `fit` runs."""
    import keras

    class SyncToHead(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            # BackupAndRestore sets the epoch to resume from on the model it restores.
            head._initial_epoch = getattr(model, "_initial_epoch", None)
            model._initial_epoch = None

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            batches.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            head.stop_training = head.stop_training or model.stop_training

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            head.stop_training = head.stop_training or model.stop_training

    return SyncToHead()


def fit_cached_head(
    model: Any,
    train: Any,
    validation: Any = None,
    *,
    epochs: int,
    callbacks: Sequence[Any] = (),
    verbose: int = 1,
    storage: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    initial_epoch: int = 0,
) -> Any:
    """Train the head of a compiled `build` model on backbone features computed once.

    Check `cached_head_applies` first: this function refuses a trunk with trainable
    weights, but cannot know about augmentation or schedules the caller meant to use.

    Args:
        model: a compiled model from `zoo_transfer.build` with a frozen backbone. Its
            head is trained in place; afterwards it is a normal full model.
        train: a `zoo_transfer.data.Splits` (its training images, and its validation
            images unless `validation` is given), a `ResizableImages` (read once, in
            order, without dropping a remainder), a batched `tf.data.Dataset` of
            `(raw images, labels)` (read once, as it comes), or an `(x, y)` pair.
            Labels may be integers or one-hot, whatever `model`'s loss expects.
        validation: the same kinds, or `None`.
        epochs: epochs of head training.
        callbacks: Keras callbacks; they see `model` (the full model) as `self.model`.
        verbose: 0 silent, 1 progress bar and a feature line, 2 one line per epoch.
        storage: `"auto"` (memory if the features fit, else disk), `"memory"` or
            `"disk"` (`np.memmap` files under `cache_dir`, deleted at the end).
        cache_dir: folder for feature files (e.g. `out/features`); a temporary folder
            when `None`. A folder created here is removed afterwards.
        batch_size: head training batch size (default: that of `train`, else 32).
        seed: fixes the per-epoch shuffle of the cached features.
        initial_epoch: the epoch to start at, as in `fit` (a resumed run: see
            `zoo_transfer.backup.restore_backup`).

    Returns:
        The `keras.callbacks.History`, with the keys a plain `fit` gives, plus
        `cached=True`, `storage` (`"memory"` or `"disk"`), `feature_seconds`,
        `feature_shape`, `feature_bytes`, `num_train`, `num_val` and `cache_files`.

    ```python
    model = zoo_transfer.build("digitnet", 5)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = fit_cached_head(model, (x, y), (x_val, y_val), epochs=5, verbose=0)
    history.history["val_accuracy"], history.feature_seconds
    ```
    """
    import keras

    if storage not in STORAGES:
        raise BuildArgumentError(f"Expected `storage` in {STORAGES}. Received: storage={storage!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise BuildArgumentError(f"Expected `epochs` as an int >= 0. Received: epochs={epochs!r}")
    if is_splits(train):
        if validation is None:
            validation = train.val_images
        train = train.train_images
    if is_splits(validation):
        validation = validation.val_images
    trunk, head = split_head(model)
    problem = trunk_problem(trunk)
    if problem:
        raise BuildArgumentError(
            f"Cannot train {model.name!r} on cached features: {problem}. Freeze the backbone "
            "(build(..., trainable_from=None)) or train with model.fit."
        )
    _compile_head(model, head)
    step = int(batch_size or guess_batch_size(train))
    if step < 1:
        raise BuildArgumentError(f"Expected `batch_size` >= 1. Received: batch_size={batch_size!r}")

    spill = FeatureStorage(storage, cache_dir)
    try:
        start = time.perf_counter()
        x_train, y_train, first = compute_features(trunk, train, "train", spill, step)
        val = None
        if validation is not None:
            val = compute_features(trunk, validation, "val", spill, step)[:2]
        feature_seconds = time.perf_counter() - start
        where = "disk" if spill.files else "memory"
        total = x_train.nbytes + (val[0].nbytes if val else 0)
        if verbose:
            print(
                f"Cached features: {len(x_train)} train"
                + (f" + {len(val[0])} val" if val else "")
                + f" images -> {x_train.shape[1:]} {x_train.dtype}, {total / 2**20:.1f} MiB "
                f"{'in memory' if where == 'memory' else 'on disk'}, in {feature_seconds:.1f} s"
            )
        batches = _feature_batches(x_train, y_train, step, seed=seed)
        val_batches = _feature_batches(*val, step, seed=None) if val else None
        callback_list = keras.callbacks.CallbackList(
            [*callbacks, _sync_callback(model, head, batches)],
            add_history=True,
            add_progbar=verbose != 0,
            model=model,
            verbose=verbose,
            epochs=epochs,
            steps=len(batches),
        )
        _build_for_training(model, first)
        model.stop_training = False
        head.history = callback_list._history  # what Keras' fit returns
        head.fit(
            batches,
            validation_data=val_batches,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=callback_list,
            verbose=verbose,
            shuffle=False,  # FeatureBatches shuffles, from `seed`
        )
        history = callback_list._history
        history.cached = True
        history.storage = where
        history.feature_seconds = feature_seconds
        history.feature_shape = tuple(x_train.shape[1:])
        history.feature_bytes = int(total)
        history.num_train = len(x_train)
        history.num_val = len(val[0]) if val else 0
        history.cache_files = [str(p) for p in spill.files]
        return history
    finally:
        spill.cleanup()
