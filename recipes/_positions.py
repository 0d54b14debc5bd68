"""Copying weights between two builds of one architecture, layer by layer in order.

Used where the same network exists twice: the ImageNet build and one at another input
size or without its top (`_backbone.py`), a keras-hub preset's image tower and the card's
build of it (`_hub.py`).
"""

from __future__ import annotations

from typing import Any

from zoo_transfer.errors import WeightsMismatchError


def copy_by_position(source: Any, target: Any, *, label: str) -> None:
    """Copy weights between two builds of one constructor (sizes or tops may differ).

    Layers are paired by position, which also pairs Keras' auto-named layers; the
    shorter model must be a prefix of the longer one (a missing top), class by class.
    """
    pairs = list(zip(source.layers, target.layers, strict=False))
    for a, b in pairs:
        if type(a) is not type(b) or [tuple(v.shape) for v in a.weights] != [
            tuple(v.shape) for v in b.weights
        ]:
            raise WeightsMismatchError(
                f"{label} does not fit {target.name!r}: layer {b.name!r} "
                f"({type(b).__name__}) meets {a.name!r} ({type(a).__name__}) with weight "
                f"shapes {[tuple(v.shape) for v in a.weights]}."
            )
    for a, b in pairs:
        for va, vb in zip(a.weights, b.weights, strict=True):
            vb.assign(va.numpy())
