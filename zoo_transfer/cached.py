"""Cached-feature head training: run the frozen trunk once, then train the head on its output.

When nothing before the head can change during `fit` (the backbone and the `preprocess`
layer are frozen, no augmentation, one image size, no unfreeze schedule), every epoch of
a plain `fit` recomputes the same backbone features. `fit_cached_head` computes them
once and trains only the head on them, usually 10-100x faster per epoch on a CPU.

How the model is split. `split_head(model)` cuts a model from `zoo_transfer.build` after
its backbone, and also moves the weightless, deterministic layers that follow it
(`head_pool`, `head_flatten`) into the trunk, so the cache holds pooled vectors, not
feature maps (49x smaller for a 7x7 map). The head model is made of the *same layer
objects* as `model`: training it trains `model`'s head in place. Nothing is copied back,
and afterwards `model` is a normal full model whose predictions equal `head(trunk(x))`.

Storage. Features live in memory when train and validation features together take at
most a quarter of the available memory (the concatenation may briefly need twice that),
otherwise in raw files read through `np.memmap` under `cache_dir`
(`features-train.bin`, `features-val.bin`). `storage="memory"` or `"disk"` forces one.
The files are deleted when `fit_cached_head` returns (they are cheap to recompute and
may be large); a `cache_dir` it had to create is removed with them.

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
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.errors import BuildArgumentError, DataError, NotATransferModelError
from zoo_transfer.memory import available_memory as _available_memory

STORAGES = ("auto", "memory", "disk")
_MEMORY_FRACTION = 0.25  # in-memory features may take this share of the available memory
_DEFAULT_BATCH_SIZE = 32
# Weightless layers that give the same output in training and inference: the trunk may
# absorb them, so the cache holds their (smaller) output.
_ABSORBABLE = (
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "Flatten",
)


# --------------------------------------------------------------------- splitting
def _model_nodes(model: Any) -> set[int]:
    """ids of the call nodes that make up `model`'s graph."""
    return {id(n) for nodes in model._nodes_by_depth.values() for n in nodes}


def _consumers(model: Any, tensor: Any) -> list[Any]:
    """`(layer, node)` for each call in `model` that takes `tensor` as an input."""
    mine = _model_nodes(model)
    found = []
    for layer in model.layers:
        for node in layer._inbound_nodes:
            if id(node) in mine and any(t is tensor for t in node.input_tensors):
                found.append((layer, node))
    return found


def _cut_tensor(model: Any) -> Any:
    """The outer model's tensor after the backbone and the weightless layers after it."""
    from zoo_transfer.recipes.stages import find_backbone

    try:
        backbone, _ = find_backbone(model)
    except NotATransferModelError as exc:
        raise BuildArgumentError(
            f"Expected a model from zoo_transfer.build(). Received: model {model.name!r}, "
            f"which has no nested backbone named after a registry card ({exc})"
        ) from None
    mine = _model_nodes(model)
    nodes = [n for n in backbone._inbound_nodes if id(n) in mine]
    if len(nodes) != 1:
        raise BuildArgumentError(
            f"Expected the backbone {backbone.name!r} to be called once. Received: "
            f"{len(nodes)} call(s) in model {model.name!r}. Build the model with "
            "zoo_transfer.build()."
        )
    outputs = {id(t) for t in model.outputs}
    ends = []
    for tensor in nodes[0].output_tensors:
        after = _consumers(model, tensor)
        if len(after) > 1 and all(_absorbable(layer, node) for layer, node in after):
            # pooled two ways (build's pooling="avgmax"): follow each
            ends += [_absorb(model, node.output_tensors[0], outputs) for _, node in after]
        else:
            ends.append(_absorb(model, tensor, outputs))
    if len(ends) == 1:
        return ends[0]
    # several maps (build's head_stages, avgmax): each pooled, then one weightless merge
    merges = [_consumers(model, t) for t in ends]
    first = merges[0][0] if merges and len(merges[0]) == 1 else None
    if (
        first is None
        or type(first[0]).__name__ != "Concatenate"
        or any(len(m) != 1 or m[0][1] is not first[1] for m in merges)
        or len(first[1].input_tensors) != len(ends)
    ):
        raise BuildArgumentError(
            f"Expected the backbone {backbone.name!r}'s {len(ends)} outputs to be pooled and "
            f"concatenated into the head (build(..., head_stages=n)). Model {model.name!r} "
            "joins them otherwise; build it with zoo_transfer.build()."
        )
    return _absorb(model, first[1].output_tensors[0], outputs)


def _absorbable(layer: Any, node: Any) -> bool:
    """A weightless one-input, one-output layer the trunk may end with (pooling, flatten)."""
    return (
        type(layer).__name__ in _ABSORBABLE
        and not layer.weights
        and len(node.input_tensors) == 1
        and len(node.output_tensors) == 1
    )


def _absorb(model: Any, cut: Any, outputs: set[int]) -> Any:
    """`cut`, moved past the weightless one-input layers (pooling, flatten) after it."""
    while id(cut) not in outputs:
        after = _consumers(model, cut)
        if len(after) != 1:
            break
        layer, node = after[0]
        if not _absorbable(layer, node):
            break
        if id(node.output_tensors[0]) in outputs:
            break
        cut = node.output_tensors[0]
    return cut


def split_head(model: Any) -> tuple[Any, Any]:
    """Split a model from `build` into its trunk and its head, sharing `model`'s layers.

    The trunk runs from the image input through the backbone (and the weightless pooling
    or flatten layer after it); the head runs from there to the output. Both are made of
    `model`'s own layer objects, so `head(trunk(x))` equals `model(x)` and training the
    head trains `model`.

    Args:
        model: a model from `zoo_transfer.build` with a new head (`num_classes` set).

    Returns:
        `(trunk, head)`, two `keras.Model`s.

    ```python
    model = zoo_transfer.build("digitnet", 5)
    trunk, head = split_head(model)
    np.allclose(head(trunk(x)), model(x))   # True
    ```
    """
    import keras

    cut = _cut_tensor(model)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    outputs = model.outputs[0] if len(model.outputs) == 1 else model.outputs
    trunk = keras.Model(inputs, cut, name=f"{model.name}_trunk")
    head = keras.Model(cut, outputs, name=f"{model.name}_head")
    return trunk, head


def _all_layers(layer: Any) -> Iterator[Any]:
    for sub in getattr(layer, "layers", ()) or ():
        yield sub
        yield from _all_layers(sub)


def _trunk_problem(trunk: Any) -> str:
    """Why the trunk could change or be random during `fit`, or `""`."""
    import keras

    trainable = [w.path for w in trunk.trainable_weights]
    if trainable:
        more = f" and {len(trainable) - 3} more" if len(trainable) > 3 else ""
        return (
            f"the trunk has trainable weights ({', '.join(trainable[:3])}{more}): part of the "
            "backbone or the preprocess layer is unfrozen"
        )
    for layer in _all_layers(trunk):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            return f"BatchNormalization layer {layer.name!r} in the trunk is in training mode"
        rate = getattr(layer, "rate", None)
        random = hasattr(layer, "seed_generator") and not (rate is not None and rate == 0)
        if random:
            return (
                f"layer {layer.name!r} ({type(layer).__name__}) in the trunk is random during "
                "training, so features computed once would differ from a plain fit"
            )
    return ""


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
    problem = _trunk_problem(trunk)
    if problem:
        return False, problem
    if not head.trainable_weights:
        return False, "the head has no trainable weights, so there is nothing to train"
    strategy = getattr(model, "distribute_strategy", None)
    replicas = getattr(strategy, "num_replicas_in_sync", 1)
    if replicas > 1:
        return False, f"the model is distributed over {replicas} replicas"
    data = getattr(splits_or_dataset, "train", splits_or_dataset)
    cardinality = _cardinality(data)
    if cardinality == "infinite":
        return False, "the training data repeats forever; pass a finite dataset"
    return True, ""


def _cardinality(data: Any) -> int | str | None:
    """Batches in a `tf.data.Dataset` (`"infinite"`, or None when unknown or not a dataset)."""
    if data is None or not hasattr(data, "cardinality") or not hasattr(data, "element_spec"):
        return None
    import tensorflow as tf

    n = int(data.cardinality())
    if n == int(tf.data.INFINITE_CARDINALITY):
        return "infinite"
    return n if n >= 0 else None


# --------------------------------------------------------------------- data sources
def _is_splits(data: Any) -> bool:
    return hasattr(data, "train_images") and hasattr(data, "val_images")


def _batches(data: Any, batch_size: int) -> tuple[Iterable[tuple[Any, Any]], int | None]:
    """`(images, labels)` batches of `data` in a fixed order, and the image count if known."""
    from zoo_transfer.data import ResizableImages

    if isinstance(data, ResizableImages):
        return data.in_order().dataset(), data.num_images
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise DataError(
                "Expected `(images, labels)` arrays. Received: a sequence of "
                f"{len(data)} items; sample weights are not supported by fit_cached_head."
            )
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if len(x) != len(y):
            raise DataError(
                f"Expected as many labels as images. Received: {len(x)} images and {len(y)} labels."
            )
        step = int(batch_size)
        return ((x[i : i + step], y[i : i + step]) for i in range(0, len(x), step)), len(x)
    if hasattr(data, "element_spec"):
        count = _cardinality(data)
        if count == "infinite":
            raise DataError(
                "Expected a finite dataset. Received: a tf.data.Dataset that repeats forever; "
                "drop `.repeat()` (features are computed from one pass)."
            )
        return data, None
    raise DataError(
        "Expected `train`/`validation` as a zoo_transfer.data.Splits, a ResizableImages, a "
        "batched tf.data.Dataset of (images, labels), or an (x, y) pair of arrays. "
        f"Received: {type(data).__name__}"
    )


def _labels_of(batch: Any) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(
            "Expected batches of (images, labels). Received: a batch of type "
            f"{type(batch).__name__}"
            + (f" with {len(batch)} items" if hasattr(batch, "__len__") else "")
        )
    return batch[0], batch[1]


def _guess_batch_size(data: Any) -> int:
    from zoo_transfer.data import ResizableImages

    if isinstance(data, ResizableImages):
        return data.batch_size
    if hasattr(data, "element_spec"):
        for images, _ in data.take(1):
            return int(images.shape[0])
    return _DEFAULT_BATCH_SIZE


# --------------------------------------------------------------------- storage
class _Spill:
    """Where features go: memory while under `budget` bytes, then files in a folder."""

    def __init__(self, storage: str, cache_dir: Any):
        self.storage = storage
        available = _available_memory()
        if storage == "memory":
            self.budget = math.inf
        elif storage == "disk":
            self.budget = 0
        else:
            self.budget = _MEMORY_FRACTION * available if available else 2**30
        self.used = 0
        self._requested = Path(cache_dir) if cache_dir is not None else None
        self.folder: Path | None = None
        self._made_folder = False
        self.files: list[Path] = []

    def folder_for_files(self) -> Path:
        if self.folder is None:
            if self._requested is None:
                self.folder = Path(tempfile.mkdtemp(prefix="zoo-transfer-features-"))
                self._made_folder = True
            else:
                self._made_folder = not self._requested.exists()
                self._requested.mkdir(parents=True, exist_ok=True)
                self.folder = self._requested
        return self.folder

    def cleanup(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)
        if self.folder is not None and self._made_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


class _FeatureWriter:
    """Collects feature batches; spills them to a raw file when the budget runs out."""

    def __init__(self, name: str, spill: _Spill, expected: int | None):
        self.name, self.spill, self.expected = name, spill, expected
        self.chunks: list[np.ndarray] = []
        self.file: Any = None
        self.path: Path | None = None
        self.count = 0
        self.shape: tuple[int, ...] | None = None
        self.dtype: Any = None

    def _to_disk(self) -> None:
        self.path = self.spill.folder_for_files() / f"features-{self.name}.bin"
        self.spill.files.append(self.path)
        self.file = open(self.path, "wb")  # noqa: SIM115 - closed in finish()
        for chunk in self.chunks:
            self.file.write(np.ascontiguousarray(chunk).tobytes())
        self.spill.used -= sum(c.nbytes for c in self.chunks)
        self.chunks = []

    def add(self, features: np.ndarray) -> None:
        if self.shape is None:
            self.shape, self.dtype = tuple(features.shape[1:]), features.dtype
            if self.expected is not None:  # the whole split will not fit: disk from the start
                per_image = features.nbytes / max(len(features), 1)
                if self.spill.used + per_image * self.expected > self.spill.budget:
                    self._to_disk()
        elif tuple(features.shape[1:]) != self.shape:
            raise DataError(
                f"Expected every batch of the {self.name} data to have one image size. "
                f"Received: features of shape {tuple(features.shape[1:])} after "
                f"{self.shape}; resize the images to one size first."
            )
        self.count += len(features)
        if self.file is None and self.spill.used + features.nbytes > self.spill.budget:
            self._to_disk()
        if self.file is not None:
            self.file.write(np.ascontiguousarray(features).tobytes())
        else:
            self.chunks.append(features)
            self.spill.used += features.nbytes

    def finish(self) -> np.ndarray:
        if self.count == 0:
            raise DataError(f"Expected at least one image in the {self.name} data. Received: none.")
        if self.file is None:
            out = np.concatenate(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
            self.chunks = []
            return out
        self.file.close()
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.count, *self.shape))


def _compute_features(
    trunk: Any, data: Any, name: str, spill: _Spill, batch_size: int
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Features and labels of every image in `data`, and its first (image, label)."""
    batches, expected = _batches(data, batch_size)
    writer = _FeatureWriter(name, spill, expected)
    labels: list[np.ndarray] = []
    first: Any = None
    for batch in batches:
        images, y = _labels_of(batch)
        writer.add(np.asarray(trunk.predict_on_batch(images)))
        labels.append(np.asarray(y))
        if first is None:
            first = (np.asarray(images[:1]), labels[-1][:1])
    return writer.finish(), np.concatenate(labels), first


def backbone_features(
    trunk: Any, data: Any, *, batch_size: int | None = None, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """The `trunk`'s features and the labels of every image in `data`, in memory.

    Args:
        trunk: the trunk of `split_head(model)`.
        data: the kinds `fit_cached_head` takes; of a `Splits`, the `split` side
            (`"train"` or `"val"`). Every image once, in order, without augmentation.
        batch_size: images per forward pass (default: that of `data`, else 32).
    """
    if _is_splits(data):
        data = data.train_images if split == "train" else data.val_images
    step = int(batch_size or _guess_batch_size(data))
    features, labels, _ = _compute_features(trunk, data, split, _Spill("memory", None), step)
    return np.asarray(features), labels


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
    if _is_splits(train):
        if validation is None:
            validation = train.val_images
        train = train.train_images
    if _is_splits(validation):
        validation = validation.val_images
    trunk, head = split_head(model)
    problem = _trunk_problem(trunk)
    if problem:
        raise BuildArgumentError(
            f"Cannot train {model.name!r} on cached features: {problem}. Freeze the backbone "
            "(build(..., trainable_from=None)) or train with model.fit."
        )
    _compile_head(model, head)
    step = int(batch_size or _guess_batch_size(train))
    if step < 1:
        raise BuildArgumentError(f"Expected `batch_size` >= 1. Received: batch_size={batch_size!r}")

    spill = _Spill(storage, cache_dir)
    try:
        start = time.perf_counter()
        x_train, y_train, first = _compute_features(trunk, train, "train", spill, step)
        val = None
        if validation is not None:
            val = _compute_features(trunk, validation, "val", spill, step)[:2]
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
