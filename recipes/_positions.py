"""Copying weights between two builds of one architecture, layer by layer in order.

Used where the same network exists twice: the ImageNet build and one at another input
size or without its top (`_backbone.py`), a keras-hub preset's image tower and the card's
build of it (`_hub.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zoo_transfer.errors import WeightsMismatchError


def copy_by_position(
    source: Any,
    target: Any,
    *,
    label: str,
    adapt: Callable[[Any, tuple], Any] | None = None,
) -> None:
    """Copy weights between two builds of one constructor (sizes or tops may differ).

    Layers are paired by position, which also pairs Keras' auto-named layers; the
    shorter model must be a prefix of the longer one (a missing top), class by class.
    A weight whose shape differs is refused, unless `adapt(source_variable, shape)`
    returns its value for the target's shape (position embeddings at another size).
    """
    pairs = list(zip(source.layers, target.layers, strict=False))
    values: list[tuple[Any, Any]] = []
    for a, b in pairs:
        fits = type(a) is type(b) and len(a.weights) == len(b.weights)
        for va, vb in zip(a.weights, b.weights, strict=False) if fits else ():
            if tuple(va.shape) == tuple(vb.shape):
                values.append((vb, va.numpy()))
                continue
            value = adapt(va, tuple(vb.shape)) if adapt is not None else None
            if value is None:
                fits = False
                break
            values.append((vb, value))
        if not fits:
            raise WeightsMismatchError(
                f"{label} does not fit {target.name!r}: layer {b.name!r} "
                f"({type(b).__name__}) meets {a.name!r} ({type(a).__name__}) with weight "
                f"shapes {[tuple(v.shape) for v in a.weights]}."
            )
    for variable, value in values:
        variable.assign(value)
