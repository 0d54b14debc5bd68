"""Input pipelines: `load` a data source, and images whose size can change between epochs.

The code lives in `zoo_transfer.data.sources`; this package re-exports its public names.
"""

from zoo_transfer.data.sources import (
    AUGMENT_PRESETS,
    ResizableArrays,
    ResizableImages,
    Splits,
    augmentation_layers,
    load,
    read_image,
)
from zoo_transfer.data.sources import (
    _decode_file as _decode_file,  # for the tests of reduced-scale JPEG decoding
)

__all__ = [
    "AUGMENT_PRESETS",
    "ResizableArrays",
    "ResizableImages",
    "Splits",
    "augmentation_layers",
    "load",
    "read_image",
]
