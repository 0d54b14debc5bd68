"""The input spec: how an image file becomes a model's input, with one owner.

Training, validation, `evaluate` and `predict` must turn a file into the same pixels,
or a model is scored on images it never saw the like of (a train/inference skew). The
spec says how: the square `side` the images are resized to, the `interpolation` and
whether the resize `antialias`es (the card's facts about the weights; training's
resize today is bilinear without antialiasing), and the centre `crop_fraction` of the
card's evaluation crop (`crop_pct`, used by test-time augmentation). It is resolved from
the card once (`InputSpec.from_card`), used by the data readers, the job and
`ProgressiveResizing`'s containers, and saved in the `.keras` file with the class names
(`zoo_transfer.model_file.embed_labels`), so inference reads it back instead of guessing.

```python
from zoo_transfer.input_spec import InputSpec
spec = InputSpec.from_card(zoo_transfer.get_card("mobilenet.a025_224"), side=128)
spec.side, spec.interpolation, spec.crop_fraction   # (128, 'bilinear', 0.875)
```
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from zoo_transfer.errors import ArgumentError

DEFAULT_SIDE = 224  # for a model that takes any size and says nothing else
DEFAULT_CROP_FRACTION = 0.875  # the cards' usual `crop_pct`: ImageNet evaluation's centre crop
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the model's input: square side, resize method, crop fraction.

    Args:
        side: `int`, the side images are resized to (square).
        interpolation: `str`, the resize method (`tf.image.resize` names), default
            `"bilinear"`.
        antialias: `bool`, whether downsizing filters first. Default `False`: what the
            training pipeline has always done, so saved models keep their pixels.
        crop_fraction: `float` in (0, 1], the centre crop of the card's evaluation
            (`crop_pct`), used by `tta="crop"`.
    """

    side: int
    interpolation: str = "bilinear"
    antialias: bool = False
    crop_fraction: float = DEFAULT_CROP_FRACTION

    def __post_init__(self) -> None:
        if isinstance(self.side, bool) or not isinstance(self.side, int) or self.side < 1:
            raise ArgumentError(
                f"Expected the input side to be a positive int. Received: side={self.side!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ArgumentError(
                f"Expected interpolation to be one of {', '.join(INTERPOLATIONS)}. "
                f"Received: interpolation={self.interpolation!r}"
            )
        if not isinstance(self.antialias, bool):
            raise ArgumentError(f"Expected antialias True or False. Received: {self.antialias!r}")
        fraction = self.crop_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise ArgumentError(f"Expected a crop fraction in (0, 1]. Received: {fraction!r}")
        if not 0.0 < float(fraction) <= 1.0:
            raise ArgumentError(
                f"Expected a crop fraction in (0, 1], e.g. 0.875. Received: {fraction!r}"
            )

    @property
    def image_size(self) -> tuple[int, int]:
        """`(height, width)`: `(side, side)`."""
        return (self.side, self.side)

    def with_side(self, side: int) -> InputSpec:
        """The same spec at another side (progressive resizing's final size)."""
        return InputSpec(int(side), self.interpolation, self.antialias, self.crop_fraction)

    @classmethod
    def from_card(cls, card: Any, side: int | None = None) -> InputSpec:
        """The spec of a card's weights, at `side` (default: the card's input side).

        ```python
        InputSpec.from_card(get_card("resnet50"))   # InputSpec(side=224, ...)
        ```
        """
        p = card.preprocessing
        return cls(
            side=int(side if side is not None else card.input_size[0]),
            interpolation=str(p.interpolation),
            crop_fraction=float(p.crop_pct),
        )

    @classmethod
    def of_model(cls, model: Any, side: int | None = None) -> InputSpec:
        """The spec of a `build` model, from the card of its backbone.

        `side` defaults to the model's fixed input side; for a model that takes any
        size, to the card's. A model without a zoo backbone gets the defaults.
        """
        from zoo_transfer.errors import NotATransferModelError
        from zoo_transfer.recipes.stages import find_backbone

        fixed = fixed_side(model)
        side = side if side is not None else fixed
        try:
            _, card = find_backbone(model)
        except NotATransferModelError:
            return cls(side=int(side or DEFAULT_SIDE))
        return cls.from_card(card, side)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (what the `.keras` file stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> InputSpec:
        """The spec `to_dict` wrote; `ArgumentError` names what is wrong."""
        if not isinstance(data, dict) or "side" not in data:
            raise ArgumentError(
                'Expected an input spec as {"side": ..., "interpolation": ...}. '
                f"Received: {data!r}"
            )
        known = {"side", "interpolation", "antialias", "crop_fraction"}
        return cls(**{k: v for k, v in data.items() if k in known})


def fixed_side(model: Any) -> int | None:
    """The side of a model's fixed square input, or None where it takes any size."""
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or not shape[1] or not shape[2]:
        return None
    if int(shape[1]) != int(shape[2]):
        return None
    return int(shape[1])
