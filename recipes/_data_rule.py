"""The defaults that depend on the data: how many fine-tuning epochs, what resolution.

`zoo-transfer train MODEL --data DIR` with no other options, `--recipe auto` and
`lp_ft(..., num_images=N)` take them from here. Each value was chosen on the defaults
sweep (`benchmarks/defaults_sweep.py`, BENCHMARKS.md), on three real tasks of different
kinds and on fashion at 1,000 to 20,000 training images, two backbones:

- **Epochs after the linear probe**: 5 below `FINE_TUNE_FROM` (5,000) training images,
  10 from there. On 50 to 2,000 images the validation choice kept the probe after five
  epochs, and ten added at most 0.2 points (fashion, 1,000 and 2,000 images); from 5,000
  images ten beat five by 0.2 to 0.8 points, on both backbones (fashion, 5,000 and
  20,000 images).
- **Resolution**: the card's input size; images of at most `SMALL_IMAGE_SIDE` (64) px
  train at `SMALL_IMAGE_TRAIN_SIDE` (128) px when the card's size is larger. On 28 px
  fashion and 8 px digits, 128 px was as accurate as 224 px (0.857 vs 0.851, 0.899 vs
  0.847) in half the time.
- **Learning rate**: 1e-4, 0.1x at the stem to 1x at the head, at every size: 3e-4 and
  1e-3 lost accuracy on every task.
- **Unfreezing**: the whole backbone from the first epoch, BatchNorm in inference mode:
  BatchNorm in training mode lost 3 to 49 points.
- **Augmentation**: `light` at every size: `none` chose the same accuracy on all three
  tasks.

The rule imports nothing heavy: the job calls it before any model is built.

```python
from zoo_transfer.recipes import data_defaults
chosen = data_defaults(6_000, image_side=28, model_side=224)
chosen.epochs, chosen.image_size   # (10, 128)
print(chosen.reasons["epochs"])
```
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo_transfer.errors import BuildArgumentError

FINE_TUNE_FROM = 5_000  # training images from which the fine-tuning epochs paid
SMALL_DATA_EPOCHS = 5
LARGE_DATA_EPOCHS = 10
SMALL_IMAGE_SIDE = 64  # images this small (shorter side, px) gain nothing above...
SMALL_IMAGE_TRAIN_SIDE = 128  # ...this training side
LEARNING_RATE = 1e-4
AUGMENT = "light"


@dataclass(frozen=True)
class DataDefaults:
    """The settings `data_defaults` chose, each with the reason the log and report show.

    `image_size` is None where the card's input size stays (nothing to change).
    """

    epochs: int
    image_size: int | None
    learning_rate: float = LEARNING_RATE
    augment: str = AUGMENT
    reasons: dict[str, str] = field(default_factory=dict)


def epochs_for(num_images: int) -> tuple[int, str]:
    """The fine-tuning epochs after the linear probe for `num_images` training images."""
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise BuildArgumentError(
            f"Expected `num_images` to be a positive int. Received: num_images={num_images!r}"
        )
    if num_images < FINE_TUNE_FROM:
        return SMALL_DATA_EPOCHS, (
            f"{num_images:,} training images (< {FINE_TUNE_FROM:,}): {SMALL_DATA_EPOCHS} "
            "epochs after the linear probe; on this little data the epochs rarely beat the "
            "probe, and final.keras keeps whichever scores best on the validation images"
        )
    return LARGE_DATA_EPOCHS, (
        f"{num_images:,} training images (>= {FINE_TUNE_FROM:,}): {LARGE_DATA_EPOCHS} epochs "
        "after the linear probe; from this much data on, 10 epochs beat 5 by 0.2 to 0.8 "
        "points in the defaults sweep"
    )


def side_for(image_side: int | None, model_side: int | None) -> tuple[int | None, str]:
    """The training side for images whose typical shorter side is `image_side` px.

    None keeps the card's `model_side`. Images of at most `SMALL_IMAGE_SIDE` px train at
    `SMALL_IMAGE_TRAIN_SIDE` when the card's size is larger: upsampling them further adds
    no detail and costs time.
    """
    if (
        image_side is not None
        and model_side is not None
        and image_side <= SMALL_IMAGE_SIDE
        and model_side > SMALL_IMAGE_TRAIN_SIDE
    ):
        return SMALL_IMAGE_TRAIN_SIDE, (
            f"the images are small (typically {image_side} px): trained at "
            f"{SMALL_IMAGE_TRAIN_SIDE} px, not the card's {model_side}; as accurate in the "
            "sweep, in half the time (--image-size overrides)"
        )
    if model_side is None:
        return None, "the card's input size"
    seen = f"images typically {image_side} px, " if image_side is not None else ""
    return None, f"{seen}the card's input size, {model_side} px"


def data_defaults(
    num_images: int, *, image_side: int | None = None, model_side: int | None = None
) -> DataDefaults:
    """The data-dependent defaults for `num_images` training images.

    Args:
        num_images: training images (after any validation split).
        image_side: their typical shorter side in pixels (`zoo_transfer.folders.
            typical_side`), or None where unknown.
        model_side: the card's input side, or None for a model that takes any size.
    """
    epochs, why_epochs = epochs_for(num_images)
    side, why_side = side_for(image_side, model_side)
    return DataDefaults(
        epochs=epochs,
        image_size=side,
        reasons={"epochs": why_epochs, "image_size": why_side},
    )
