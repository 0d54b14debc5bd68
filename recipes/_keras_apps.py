"""Card -> Keras model: build the architecture a card describes, find its cut points.

Keras is imported inside the functions, never at module import.
"""

from __future__ import annotations

import importlib
from typing import Any

from zoo_transfer.errors import CardValidationError, LayerReferenceError
from zoo_transfer.registry import LAYER_REF_RE, NESTED_REF_RE, Card


def constructor(card: Card, source: str = "registry") -> Any:
    """The callable that builds `card`'s network.

    A bare name (`"ResNet50"`) is looked up in `keras.applications`; a dotted path
    (`"my_pkg.models:build"` or `"my_pkg.models.build"`) is imported. One that cannot be
    found raises `CardValidationError` naming `source` (the card file), the card and
    what is missing.
    """
    name = card.constructor
    if ":" in name or "." in name:
        module, _, attr = name.replace(":", ".").rpartition(".")
        try:
            found = importlib.import_module(module)
        except ImportError as exc:
            raise CardValidationError(
                source, card.name, "constructor",
                f"module {module!r} cannot be imported ({exc}). Install the package that "
                f"provides {name!r}, or fix `constructor`.",
            ) from None  # fmt: skip
        if not callable(getattr(found, attr, None)):
            raise CardValidationError(
                source, card.name, "constructor",
                f"module {module!r} has no callable {attr!r}. Fix `constructor`.",
            )  # fmt: skip
        return getattr(found, attr)
    import keras

    if not callable(getattr(keras.applications, name, None)):
        raise CardValidationError(
            source, card.name, "constructor",
            f"keras.applications has no constructor {name!r} in Keras {keras.__version__}. "
            "Upgrade Keras or fix `constructor`.",
        )  # fmt: skip
    return getattr(keras.applications, name)


def instantiate(
    card: Card,
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_shape: tuple[int | None, int | None, int] | None = None,
    **overrides: Any,
) -> Any:
    """Build the Keras model of `card` as Keras' own constructor does.

    Args:
        include_top: keep the ImageNet classifier.
        weights: passed to the constructor (`None`, `"imagenet"` or a file path).
        input_shape: defaults to the card's `input_size`.
        **overrides: extra constructor kwargs, over the card's `kwargs`.
    """
    kwargs = dict(card.kwargs)
    kwargs.update(overrides)
    shape = input_shape or card.input_size
    if shape is not None:
        kwargs.setdefault("input_shape", tuple(shape))
    return constructor(card)(include_top=include_top, weights=weights, **kwargs)


def _consumers(model: Any, tensor: Any) -> list[Any]:
    """The operations (layers or ops) of `model` that take `tensor` as an input."""
    import keras

    found = []
    for op in model.operations:
        for node in op._inbound_nodes:
            if any(t is tensor for t in keras.tree.flatten(node.arguments.keras_tensors)):
                found.append(node)
    return found


def resolve_tap(model: Any, ref: str) -> Any:
    """The symbolic tensor that the layer reference `ref` names in `model`.

    `ref` is a layer name, or `"name+N"`: the output reached by following the single
    consumer of layer `name` N times (for outputs of auto-named layers or bare ops), or
    `"name:K"`: the K-th (flattened) output of a layer with several outputs.
    Raises `LayerReferenceError` (a `ValueError`) naming the reference when it does not
    resolve.
    """
    import keras

    nested = NESTED_REF_RE.match(ref)
    if nested:
        raise LayerReferenceError(
            f"{ref!r} is block {nested.group('inner')!r} inside layer "
            f"{nested.group('outer')!r}, which runs all its blocks in one call: there is no "
            "tensor of its own to cut at."
        )
    m = LAYER_REF_RE.match(ref)
    if not m:
        raise LayerReferenceError(f"Bad layer reference {ref!r}: expected 'name' or 'name+N'.")
    try:
        layer = model.get_layer(m.group("name"))
    except ValueError:
        raise LayerReferenceError(
            f"Layer {m.group('name')!r} (from reference {ref!r}) is not in model {model.name!r}."
        ) from None
    if m.group("index") is None:
        tensor = layer.output
    else:
        outputs = keras.tree.flatten(layer._inbound_nodes[0].outputs)
        index = int(m.group("index"))
        if index >= len(outputs):
            raise LayerReferenceError(
                f"Reference {ref!r}: layer {layer.name!r} has {len(outputs)} outputs, "
                f"so there is no output {index}."
            )
        tensor = outputs[index]
    for hop in range(int(m.group("hops") or 0)):
        nodes = _consumers(model, tensor)
        if len(nodes) != 1:
            raise LayerReferenceError(
                f"Reference {ref!r}: hop {hop + 1} is ambiguous in {model.name!r} "
                f"({len(nodes)} consumers); pick a named layer instead."
            )
        outputs = nodes[0].outputs
        if len(outputs) != 1:
            raise LayerReferenceError(
                f"Reference {ref!r}: hop {hop + 1} reaches a multi-output op."
            )
        tensor = outputs[0]
    return tensor
