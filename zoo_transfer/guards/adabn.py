"""AdaBN (Li et al., 2016): BatchNorm statistics re-estimated on the target images.

Every BatchNorm layer's moving mean and variance become those of its inputs on your
images, layer after layer in the model's order; nothing else changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo_transfer.errors import ArgumentError, DataError
from zoo_transfer.guards.batches import BATCH_SIZE, read_batches


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
    model: Any, data: Any, *, batches: int | None = None, batch_size: int = BATCH_SIZE
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
        for i, (images, _) in enumerate(read_batches(data, batch_size, labelled=False, rank=rank)):
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
