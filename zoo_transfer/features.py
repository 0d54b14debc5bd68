"""Backbone features: split a `build` model after its backbone, and run the trunk once.

`split_head(model)` cuts a model from `zoo_transfer.build` after its backbone, and also
moves the weightless, deterministic layers that follow it (`head_pool`, `head_flatten`,
the multi-stage pools and their concatenation) into the trunk, so features are pooled
vectors, not feature maps (49x smaller for a 7x7 map). The head model is made of the
*same layer objects* as `model`: training it trains `model`'s head in place.

`backbone_features(trunk, data)` computes the trunk's output for every image once, in
order, without augmentation. The cached-head training (`zoo_transfer.cached`) and the
linear probe (`zoo_transfer.linear_head`) train on these features.

Storage. Features live in memory when train and validation features together take at
most a quarter of the available memory, otherwise in raw files read through
`np.memmap` (`FeatureStorage`).

```python
from zoo_transfer.features import backbone_features, split_head
trunk, head = split_head(model)
x, y = backbone_features(trunk, splits, split="train")
```
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterable, Iterator
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
    "Cropping1D",  # a transformer's tokens: the prefix (CLS, registers) cut off, or kept
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
        tensor = _absorb(model, tensor, outputs)  # e.g. a transformer's patch tokens
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


def trunk_problem(trunk: Any) -> str:
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


# --------------------------------------------------------------------- data sources
def dataset_batches(data: Any) -> int | str | None:
    """Batches in a `tf.data.Dataset` (`"infinite"`, or None when unknown or not a dataset)."""
    if data is None or not hasattr(data, "cardinality") or not hasattr(data, "element_spec"):
        return None
    import tensorflow as tf

    n = int(data.cardinality())
    if n == int(tf.data.INFINITE_CARDINALITY):
        return "infinite"
    return n if n >= 0 else None


def is_splits(data: Any) -> bool:
    """Whether `data` is a `zoo_transfer.data.Splits` (train and validation pipelines)."""
    return hasattr(data, "train_images") and hasattr(data, "val_images")


def _batches(data: Any, batch_size: int) -> tuple[Iterable[tuple[Any, Any]], int | None]:
    """`(images, labels)` batches of `data` in a fixed order, and the image count if known."""
    import keras

    from zoo_transfer.data import Resizable

    if isinstance(data, Resizable) and hasattr(data, "in_order"):
        once = data.in_order()  # ResizableImages, ResizableArrays
        batches = once.dataset()
        if isinstance(batches, keras.utils.PyDataset):  # ResizableArrays off TensorFlow
            return (batches[i] for i in range(len(batches))), data.num_images
        return batches, data.num_images
    if isinstance(data, keras.utils.PyDataset):
        return (data[i] for i in range(len(data))), None
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
        count = dataset_batches(data)
        if count == "infinite":
            raise DataError(
                "Expected a finite dataset. Received: a tf.data.Dataset that repeats forever; "
                "drop `.repeat()` (features are computed from one pass)."
            )
        return data, None
    raise DataError(
        "Expected `train`/`validation` as a zoo_transfer.data.Splits, a ResizableImages or "
        "ResizableArrays, a batched tf.data.Dataset or keras.utils.PyDataset of (images, "
        "labels), or an (x, y) pair of arrays. "
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


def guess_batch_size(data: Any) -> int:
    """The batch size `data` was made with (a pipeline's or a dataset's), else 32."""
    from zoo_transfer.data import Resizable

    if isinstance(data, Resizable):
        return data.batch_size
    if hasattr(data, "element_spec"):
        for images, _ in data.take(1):
            return int(images.shape[0])
    return _DEFAULT_BATCH_SIZE


# --------------------------------------------------------------------- storage
class FeatureStorage:
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

    def __init__(self, name: str, spill: FeatureStorage, expected: int | None):
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


def compute_features(
    trunk: Any, data: Any, name: str, spill: FeatureStorage, batch_size: int
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
    if is_splits(data):
        data = data.train_images if split == "train" else data.val_images
    step = int(batch_size or guess_batch_size(data))
    features, labels, _ = compute_features(trunk, data, split, FeatureStorage("memory", None), step)
    return np.asarray(features), labels
