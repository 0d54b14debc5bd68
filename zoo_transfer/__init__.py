"""zoo-transfer: correct transfer learning for Keras in one line.

Importing this package does not import Keras or TensorFlow; the registry is plain
data. Keras loads on the first call that builds a model.

```python
import zoo_transfer
zoo_transfer.list_models("resnet*")
card = zoo_transfer.get_card("resnet50")
```
"""

from zoo_transfer.errors import (
    CardValidationError,
    DuplicateModelError,
    PluginWarning,
    UnknownModelError,
    ZooTransferError,
)
from zoo_transfer.registry import Card, get_card, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "Card",
    "CardValidationError",
    "DuplicateModelError",
    "PluginWarning",
    "UnknownModelError",
    "ZooTransferError",
    "__version__",
    "get_card",
    "list_models",
    "register_model",
]
