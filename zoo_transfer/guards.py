"""Guards against forgetting, applied to a model's weights: WiSE-FT and AdaBN.

Fine-tuning can trade what pretraining taught for a little accuracy on the new task.
Two guards here act on the weights alone, so the result is the same plain Keras model
(no new layer, no custom object: it saves and loads without zoo-transfer):

- `wise_ft` (Wortsman et al., CVPR 2022): every weight becomes
  `(1 - alpha) * reference + alpha * fine_tuned`, the reference being the model before
  fine-tuning (in LP-FT, the model right after the linear probe). `wise_ft_sweep`
  scores a few alphas on validation images and keeps the best.
- `adapt_batchnorm` (AdaBN, Li et al., 2016): every BatchNorm layer's moving mean and
  variance re-estimated on the target images, nothing else changed.

The third guard, L2-SP, acts during training: `transfer_optimizer(model, l2_sp=alpha)`
(`zoo_transfer.optimizers`).

```python
reference = "runs/photos/probe.keras"      # or the model, or its get_weights()
zoo_transfer.wise_ft(model, 0.5, reference=reference)
zoo_transfer.adapt_batchnorm(model, splits)
```
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.errors import ArgumentError, DataError, ModelFileError, WeightsMismatchError

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
_BATCH_SIZE = 32


# ------------------------------------------------------------------ WiSE-FT
def _check_alpha(alpha: Any, name: str = "alpha") -> float:
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float, np.integer, np.floating))
        or not math.isfinite(float(alpha))
        or not 0.0 <= float(alpha) <= 1.0
    ):
        raise ArgumentError(
            f"Expected `{name}` to be a number in [0, 1] (0: the reference's weights, 1: the "
            f"fine-tuned ones). Received: {name}={alpha!r}"
        )
    return float(alpha)


def _layer_of(variable: Any) -> str:
    """The layer a variable belongs to, by its path: `stem_conv/kernel` -> `stem_conv`."""
    return str(variable.path).rsplit("/", 1)[0]


def _reference_weights(model: Any, reference: Any) -> list[np.ndarray]:
    """`reference` (a model, a `.keras` path, or a list of arrays) as arrays that match
    `model.weights` one by one, or `WeightsMismatchError` naming the first that does not."""
    import keras

    ref_variables = None
    if isinstance(reference, (str, os.PathLike)):
        path = Path(reference)
        if not path.is_file():
            raise ModelFileError(
                f"Expected `reference` to be a .keras file of the model before fine-tuning. "
                f"Received: reference={str(reference)!r}, which does not exist."
            )
        reference = keras.saving.load_model(path, compile=False)
    if hasattr(reference, "weights") and hasattr(reference, "layers"):
        ref_variables = list(reference.weights)
        arrays = [keras.ops.convert_to_numpy(v) for v in ref_variables]
    elif isinstance(reference, (list, tuple)):
        arrays = [np.asarray(a) for a in reference]
    else:
        raise ArgumentError(
            "Expected `reference` to be a Keras model of the same architecture, the path "
            "of its .keras file, or its weights (`model.get_weights()`). Received: "
            f"reference of type {type(reference).__name__}"
        )
    mine = list(model.weights)
    for i in range(max(len(mine), len(arrays))):
        if i < len(mine) and i < len(arrays) and tuple(arrays[i].shape) == tuple(mine[i].shape):
            continue
        if i >= len(mine):
            where = f"the model has {len(mine)} weights, the reference {len(arrays)}"
            theirs = ref_variables[i].path if ref_variables else f"weight {i}"
            first = f"the reference's {theirs!r} has no counterpart in the model ({where})"
        else:
            layer, got = _layer_of(mine[i]), tuple(mine[i].shape)
            if i >= len(arrays):
                other = f"the reference has only {len(arrays)} weights"
            else:
                name = f" ({ref_variables[i].path})" if ref_variables else ""
                other = f"the reference's weight {i}{name} has shape {tuple(arrays[i].shape)}"
            first = f"layer {layer!r}: {mine[i].path} has shape {got}, but {other}"
        raise WeightsMismatchError(
            f"The reference does not match the model's architecture; the first difference is "
            f"at {first}. Pass the same model before fine-tuning (e.g. the job's probe.keras "
            "or a copy saved right after the linear probe)."
        )
    return arrays


def _mix(model: Any, fine: Sequence[np.ndarray], ref: Sequence[np.ndarray], alpha: float) -> None:
    """Assign `(1 - alpha) * ref + alpha * fine` to every floating-point weight of `model`."""
    import keras

    for variable, f, r in zip(model.weights, fine, ref, strict=True):
        if not keras.backend.is_float_dtype(variable.dtype):
            continue  # counters and random-generator states: the fine-tuned model's
        if alpha == 1.0:
            value = f
        elif alpha == 0.0:
            value = r
        else:  # in float64, rounded once to the weight's dtype
            value = (1.0 - alpha) * np.asarray(r, np.float64) + alpha * np.asarray(f, np.float64)
        variable.assign(np.asarray(value).astype(f.dtype))


def wise_ft(model: Any, alpha: float, *, reference: Any) -> Any:
    """Interpolate a fine-tuned model's weights toward its reference, **in place** (WiSE-FT).

    Every floating-point weight, the backbone's, the head's and the BatchNorm moving
    statistics alike, becomes `(1 - alpha) * reference + alpha * fine_tuned` (computed in
    float64, rounded once). Wortsman et al. (CVPR 2022) found that such a mix keeps
    much of the accuracy the fine-tuned model gained while keeping the reference's
    robustness. The model keeps its architecture, compile state and optimizer, so it
    saves as the same plain Keras model; keep `model.get_weights()` first if you need
    the fine-tuned weights back. Integer weights (e.g. random-generator states) keep the
    fine-tuned model's values.

    Args:
        model: the fine-tuned Keras model; changed in place.
        alpha: `float` in [0, 1]: 1 keeps the fine-tuned weights, 0 gives the reference's.
        reference: the model before fine-tuning: a Keras model of the same architecture,
            the path of its `.keras` file, or its weights (`get_weights()` order). In
            LP-FT it is the model right after the linear probe (the job's `probe.keras`).

    Returns:
        `model`.

    Raises:
        ArgumentError: `alpha` is not a number in [0, 1].
        WeightsMismatchError: the reference has other weights; the message names the
            first layer that differs.

    ```python
    reference = zoo_transfer.saving.inference_copy(model)   # right after the probe
    model.fit(...)                                          # fine-tune
    zoo_transfer.wise_ft(model, 0.5, reference=reference)
    ```
    """
    import keras

    alpha = _check_alpha(alpha)
    ref = _reference_weights(model, reference)
    fine = [keras.ops.convert_to_numpy(v) for v in model.weights]
    _mix(model, fine, ref, alpha)
    return model


@dataclass(frozen=True)
class WiseFTSweep:
    """What `wise_ft_sweep` measured: the validation accuracy of each alpha, and the best.

    Args:
        alphas: the alphas tried, in the order given.
        accuracies: the validation accuracy of each.
        best_alpha: the alpha with the highest accuracy; among equals, the one nearest
            0.5 (the mix Wortsman et al. use when nothing chooses), then the smaller.
    """

    alphas: tuple[float, ...]
    accuracies: tuple[float, ...]
    best_alpha: float

    @property
    def best_accuracy(self) -> float:
        return self.accuracies[self.alphas.index(self.best_alpha)]

    def to_json(self) -> dict[str, Any]:
        return {
            "alpha": self.best_alpha,
            "val_accuracy": self.best_accuracy,
            "alphas": list(self.alphas),
            "val_accuracies": list(self.accuracies),
        }


def wise_ft_sweep(
    model: Any,
    reference: Any,
    val_data: Any,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    *,
    batch_size: int = _BATCH_SIZE,
) -> WiseFTSweep:
    """Score WiSE-FT's alphas on validation images and leave `model` at the best one.

    For each alpha, the model's weights are set to the mix of `wise_ft` and its
    accuracy measured on `val_data` (inference mode, every image once, in order).
    Afterwards the model holds the best alpha's weights (in place, as `wise_ft`); among
    alphas of equal accuracy the one nearest 0.5 wins, then the smaller.

    Args:
        model: the fine-tuned Keras model (a classifier: softmax, or one sigmoid output).
        reference: as for `wise_ft`.
        val_data: labelled validation images: `(images, labels)` arrays, a batched
            `tf.data.Dataset` of `(images, labels)`, a `zoo_transfer.data.Splits` (its
            validation split) or a `ResizableImages` (read with `in_order()`). Labels are
            class indices or one-hot rows.
        alphas: the alphas to try, each in [0, 1].
        batch_size: images per forward pass for arrays.

    Returns:
        `WiseFTSweep` with every alpha's accuracy and the best alpha.

    ```python
    sweep = zoo_transfer.wise_ft_sweep(model, "run/probe.keras", (x_val, y_val))
    sweep.best_alpha, sweep.accuracies   # 0.5, (0.91, 0.93, 0.94, 0.93, 0.92)
    ```
    """
    import keras

    alphas = tuple(_check_alpha(a, "alphas") for a in alphas) if alphas is not None else ()
    if not alphas:
        raise ArgumentError(
            f"Expected at least one alpha in [0, 1], e.g. (0, 0.5, 1). Received: alphas={alphas!r}"
        )
    ref = _reference_weights(model, reference)
    fine = [keras.ops.convert_to_numpy(v) for v in model.weights]
    if hasattr(val_data, "val_images"):  # a Splits: its validation split
        if val_data.val_images is None:
            raise DataError(
                "wise_ft_sweep scores alphas on validation images, but the Splits has no "
                "validation split. Load it with validation_split=... or validation=...."
            )
        val_data = val_data.val_images
    accuracies = []
    for alpha in alphas:
        _mix(model, fine, ref, alpha)
        accuracies.append(_accuracy(model, val_data, batch_size))
    best = max(range(len(alphas)), key=lambda i: (accuracies[i], -abs(alphas[i] - 0.5), -alphas[i]))
    _mix(model, fine, ref, alphas[best])
    return WiseFTSweep(alphas, tuple(accuracies), alphas[best])


def _accuracy(model: Any, data: Any, batch_size: int) -> float:
    correct = total = 0
    rank = len(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    for images, labels in _batches(data, batch_size, labelled=True, rank=rank):
        probs = np.asarray(model.predict_on_batch(images))
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[-1] > 1:
            labels = labels.argmax(-1)
        labels = labels.reshape(-1)
        pred = (probs.reshape(-1) > 0.5).astype(int) if probs.shape[-1] == 1 else probs.argmax(-1)
        correct += int(np.sum(pred == labels))
        total += len(labels)
    if total == 0:
        raise DataError("Expected at least one validation image. Received: none.")
    return correct / total


# ------------------------------------------------------------------ data
def _batches(
    data: Any, batch_size: int, *, labelled: bool, rank: int | None = None
) -> Iterator[tuple[Any, Any]]:
    """`(images, labels)` batches of `data` in a fixed order, without augmentation;
    `rank`: the model input's (batch axis included), to catch an unbatched dataset."""
    if hasattr(data, "train_images") and hasattr(data, "val_images"):  # Splits
        data = data.train_images
    if hasattr(data, "in_order") and hasattr(data, "dataset"):  # ResizableImages
        data = data.in_order().dataset()
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if len(x) != len(y):
            raise DataError(
                f"Expected as many labels as images. Received: {len(x)} images and {len(y)} labels."
            )
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
        return
    if isinstance(data, np.ndarray) and not labelled:
        if data.ndim != 4:
            raise DataError(f"Expected images of shape (N, H, W, C). Received: {data.shape}")
        for i in range(0, len(data), batch_size):
            yield data[i : i + batch_size], None
        return
    if hasattr(data, "element_spec") and hasattr(data, "cardinality"):  # tf.data.Dataset
        import tensorflow as tf

        if int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise DataError(
                "Expected a finite dataset. Received: a tf.data.Dataset that repeats forever; "
                "drop `.repeat()` (one pass is read)."
            )
        for element in data:
            if isinstance(element, (tuple, list)):
                images, labels = element[0], element[1] if len(element) > 1 else None
            else:
                images, labels = element, None
            if rank is not None and len(images.shape) == rank - 1:
                raise DataError(
                    "Expected a batched dataset of (images, labels). Received: elements of "
                    f"shape {tuple(images.shape)}, one image each; call .batch(32) on it."
                )
            if labelled and labels is None:
                raise DataError("Expected a dataset of (images, labels). Received: images only.")
            yield images, labels
        return
    kinds = "(images, labels) arrays, a batched tf.data.Dataset, a Splits or a ResizableImages"
    if not labelled:
        kinds = "an array of images, " + kinds
    raise DataError(f"Expected {kinds}. Received: {type(data).__name__}")


# ------------------------------------------------------------------ AdaBN
def _graph(model: Any) -> Any:
    """The functional graph of `model` (a `Sequential` keeps one inside), or None."""
    if hasattr(model, "_nodes_by_depth"):
        return model
    return getattr(model, "_functional", None)


def _call_inputs(layer: Any, model: Any) -> list[Any]:
    """The input tensors of `layer`'s one call in `model`'s graph."""
    graph = _graph(model)
    mine = {id(n) for nodes in graph._nodes_by_depth.values() for n in nodes}
    calls = [n for n in layer._inbound_nodes if id(n) in mine]
    if len(calls) != 1:
        raise ArgumentError(
            f"adapt_batchnorm needs each layer called once in its model. Received: layer "
            f"{layer.name!r} is called {len(calls)} times in {model.name!r}, so its "
            "inputs are not one set of statistics."
        )
    return list(calls[0].input_tensors)


def _batchnorm_layers(model: Any, chain: tuple[Any, ...] = ()) -> list[tuple[Any, tuple]]:
    """`(layer, models)` for every BatchNorm layer, nested models included, in the
    model's order; `models` runs from `model` to the one that holds the layer."""
    import keras

    if _graph(model) is None:
        raise ArgumentError(
            f"adapt_batchnorm reads the inputs of each BatchNorm layer from the model's graph, "
            f"but model {model.name!r} has none yet. Build it on an input first "
            "(keras.Input, or model.build(input_shape))."
        )
    chain = (*chain, model)
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append((layer, chain))
        elif isinstance(layer, keras.Model):
            found.extend(_batchnorm_layers(layer, chain))
    return found


def _generations(layers: list[tuple[Any, tuple]]) -> list[list[tuple[Any, tuple]]]:
    """The BatchNorm layers in rounds: a layer's round is one after the latest round of
    the BatchNorm layers its input depends on, so a round's inputs are known once the
    rounds before it are adapted (one pass over the data per round)."""
    from zoo_transfer.recipes.stages import ancestors

    rounds: dict[int, int] = {}
    out: list[list[tuple[Any, tuple]]] = []
    for k, (layer, chain) in enumerate(layers):
        deps: set[int] = set()
        for t in _call_inputs(layer, chain[-1]):
            deps |= ancestors(t)
        level = 0
        for earlier, other in layers[:k]:
            # held by another model: assume it feeds this one (it comes earlier)
            if other[-1] is not chain[-1] or id(earlier) in deps:
                level = max(level, rounds[id(earlier)] + 1)
        rounds[id(layer)] = level
        while len(out) <= level:
            out.append([])
        out[level].append((layer, chain))
    return out


def _input_reader(group: list[tuple[Any, tuple]]) -> Any:
    """A function from a batch of the outer model's inputs to the inputs of the layers
    of `group` (all held by one model, reached through the models of their chain)."""
    import keras

    chain = group[0][1]
    steps = []
    for outer, inner in zip(chain, chain[1:], strict=False):
        inputs, feed = _graph(outer).inputs, _call_inputs(inner, outer)
        if [id(t) for t in feed] != [id(t) for t in inputs]:  # else: called on the input
            steps.append(keras.Model(inputs, feed))
    targets = [_call_inputs(layer, chain[-1])[0] for layer, _ in group]
    steps.append(keras.Model(_graph(chain[-1]).inputs, targets))

    def read(images: Any) -> list[np.ndarray]:
        # called eagerly: a traced predict function per sub-model would cost more than it saves
        x = keras.ops.convert_to_tensor(images, "float32")
        for step in steps:
            x = step(x, training=False)
        return [keras.ops.convert_to_numpy(a) for a in (x if isinstance(x, (list, tuple)) else [x])]

    return read


class _Moments:
    """Per-channel mean and population variance over batches, in float64 (Chan et al.'s
    pairwise update, so no sum of squares loses precision)."""

    def __init__(self, axis: int):
        self.axis, self.n = axis, 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def add(self, batch: np.ndarray) -> None:
        channels = batch.shape[self.axis]
        x = np.moveaxis(np.asarray(batch, np.float64), self.axis, -1).reshape(-1, channels)
        n, mean = len(x), x.mean(0)
        m2 = ((x - mean) ** 2).sum(0)
        if self.mean is None:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta**2 * self.n * n / total
        self.n = total

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, self.m2 / self.n


def adapt_batchnorm(
    model: Any, data: Any, *, batches: int | None = None, batch_size: int = _BATCH_SIZE
) -> list[str]:
    """Re-estimate every BatchNorm layer's moving mean and variance on `data` (AdaBN).

    A BatchNorm layer in inference mode normalises with the statistics of the
    pretraining images; on other images (another camera, colour, scale) its outputs
    shift. AdaBN (Li et al., 2016) replaces them by the statistics of the target
    images: each layer's moving mean and variance become the per-channel mean and
    (population) variance of its inputs over `data`, with the layers before it already
    adapted. No other weight changes, and the model stays a plain Keras model.

    The layers are adapted in rounds: a round holds the layers whose inputs depend on
    no BatchNorm layer of the same or a later round (for a plain chain such as
    MobileNet, one layer per round; parallel branches share a round), and each round
    reads `data` once, through the model up to its layers in inference mode. This gives
    exactly the one-layer-at-a-time result with one pass per round instead of per
    layer.

    Args:
        model: a Keras model (e.g. from `zoo_transfer.build`); changed in place.
        data: the target images, read in order without augmentation: an array of images,
            `(images, labels)` arrays, a batched `tf.data.Dataset` of `(images, labels)`
            (it must yield the same images on every pass: no shuffling or random
            augmentation), a `zoo_transfer.data.Splits` (its training images) or a
            `ResizableImages` (both read with `in_order()`).
        batches: use only the first `batches` batches (default: all of `data`).
        batch_size: images per forward pass for arrays.

    Returns:
        The names of the BatchNorm layers adapted, in the order adapted.

    ```python
    model = zoo_transfer.build("mobilenet", num_classes=5)
    zoo_transfer.adapt_batchnorm(model, splits)   # before the probe and fine-tuning
    ```
    """
    if batches is not None and (
        isinstance(batches, bool) or not isinstance(batches, int) or batches < 1
    ):
        raise ArgumentError(
            f"Expected `batches` to be a positive int or None (all). Received: batches={batches!r}"
        )
    layers = _batchnorm_layers(model)
    if not layers:
        raise ArgumentError(
            f"adapt_batchnorm re-estimates BatchNorm statistics, but model {model.name!r} has "
            "no BatchNormalization layer. Leave AdaBN (--adabn) off for this model."
        )
    adapted = []
    for round_ in _generations(layers):
        by_graph: dict[int, list[tuple[Any, tuple]]] = {}
        for item in round_:
            by_graph.setdefault(id(item[1][-1]), []).append(item)
        groups = list(by_graph.values())
        readers = [_input_reader(g) for g in groups]
        moments = [[_Moments(layer.axis) for layer, _ in g] for g in groups]
        seen = 0
        rank = len(model.inputs[0].shape) if getattr(model, "inputs", None) else None
        for i, (images, _) in enumerate(_batches(data, batch_size, labelled=False, rank=rank)):
            if batches is not None and i >= batches:
                break
            for read, stats in zip(readers, moments, strict=True):
                for m, value in zip(stats, read(images), strict=True):
                    m.add(value)
            seen += 1
        if not seen:
            raise DataError("Expected at least one batch of images. Received: none.")
        for g, stats in zip(groups, moments, strict=True):
            for (layer, _), m in zip(g, stats, strict=True):
                mean, var = m.result()
                layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
                layer.moving_variance.assign(var.astype(layer.moving_variance.dtype))
                adapted.append(layer.name)
    return adapted
