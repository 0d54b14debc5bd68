"""LoRA on a card's backbone: low-rank updates of frozen pretrained weights.

A keras-hub transformer gets keras-hub's own `enable_lora` (the attention query and
value projections). A CNN gets Keras' layer-level LoRA on every `Conv2D` and `Dense`
of the backbone (depthwise and separable convolutions have none in Keras): each kernel
stays frozen and learns a rank-r update `A @ B` instead. Either way every other
backbone weight is frozen (BatchNorm in inference mode), except that Keras' LoRA
leaves the adapted layers' biases trainable. The layers stay Keras' own classes, so a
saved model loads in plain Keras.
"""

from __future__ import annotations

from typing import Any

from zoo_transfer.errors import BuildArgumentError
from zoo_transfer.registry import Card


def enable_lora(card: Card, backbone: Any, rank: Any) -> int:
    """Put LoRA of `rank` on `backbone` (built from `card`), all else frozen.

    Returns how many layers got LoRA; `BuildArgumentError` for a bad rank or a backbone
    with nothing to adapt.
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise BuildArgumentError(f"Expected `lora_rank` as a positive int. Received: {rank!r}")
    if card.tokens is not None and hasattr(backbone, "enable_lora"):
        backbone.enable_lora(rank)
        count = len(getattr(backbone, "_lora_enabled_layers", []))
        looked_for = backbone.default_lora_layer_names()
    else:
        count = _layer_lora(backbone, rank)
        looked_for = "Conv2D and Dense layers"
    if not count:
        raise BuildArgumentError(
            f"{card.name}: found no layer to put LoRA on (looked for {looked_for}). "
            "Fine-tune it with trainable_from=STAGE instead."
        )
    return count


def _layer_lora(backbone: Any, rank: int) -> int:
    """Keras' own LoRA on each `Conv2D` and `Dense` of `backbone`; all else frozen."""
    import keras

    backbone.trainable = True
    layers = list(backbone._flatten_layers(include_self=False))
    for layer in layers:
        layer.trainable = False
    count = 0
    for layer in layers:
        adaptable = isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
        if adaptable and layer.built and not getattr(layer, "kernel_constraint", None):
            layer.trainable = True
            layer.enable_lora(rank)
            count += 1
    return count
