"""keras-hub encoder layers that run all their transformer blocks in one call.

keras-hub's ViT, DeiT and DINOv2 backbones hold every block inside one encoder layer, so
the functional graph has no layer per block. `recipes.stages.units` splits such a layer
into its blocks, so that freezing, unfreezing and learning rates work block by block.
Kept apart from `_hub` (which loads presets) so that the stage map needs nothing else.
"""

from __future__ import annotations

from typing import Any

# keras-hub encoder layers that run every transformer block in one call: the attribute
# holding their blocks, in order. `recipes.stages` freezes and groups those blocks one
# by one, as the stages `block1`..`blockN`.
BLOCK_LISTS = {
    "ViTEncoder": "encoder_layers",
    "DeiTEncoder": "encoder_layers",
    "DINOV2Encoder": "layers",
}


def encoder_blocks(layer: Any) -> list[Any] | None:
    """The transformer blocks, in order, of a keras-hub encoder layer that runs them all
    in one call (`BLOCK_LISTS`); None for any other layer."""
    attr = BLOCK_LISTS.get(type(layer).__name__)
    if attr is None or not type(layer).__module__.startswith("keras_hub."):
        return None
    return list(getattr(layer, attr, None) or []) or None
