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
    ArgumentError,
    BuildArgumentError,
    CardValidationError,
    DuplicateModelError,
    ExportError,
    MissingExtraError,
    PluginWarning,
    UnknownModelError,
    WeightsCorruptError,
    WeightsMismatchError,
    WeightsUnavailableError,
    ZooTransferError,
)
from zoo_transfer.registry import Card, get_card, list_models, register_model

__version__ = "0.1.0"

# Keras-backed API, imported on first use so `import zoo_transfer` stays light.
_LAZY = {
    "EpochSeeding": "zoo_transfer.callbacks",
    "GradualUnfreezing": "zoo_transfer.callbacks",
    "GroupedOptimizer": "zoo_transfer.optimizers",
    "transfer_optimizer": "zoo_transfer.optimizers",
    "ProgressiveResizing": "zoo_transfer.callbacks",
    "fine_tune": "zoo_transfer.training",
    "fit_transfer": "zoo_transfer.training",
    "fit_linear_head": "zoo_transfer.linear_head",
    "lr_find": "zoo_transfer.training",
    "build": "zoo_transfer.recipes",
    "card_from_preset": "zoo_transfer.recipes",
    "export": "zoo_transfer.exports",
    "feature_extractor": "zoo_transfer.recipes",
    "load_teachable_machine": "zoo_transfer.recipes",
    "adapt_batchnorm": "zoo_transfer.guards",
    "wise_ft": "zoo_transfer.guards",
    "wise_ft_sweep": "zoo_transfer.guards",
    "save_lora": "zoo_transfer.lora",
    "load_lora": "zoo_transfer.lora",
    "resize_model": "zoo_transfer.resizing",
}


# Public submodules, reachable as attributes (`zoo_transfer.data.load(...)`) and imported
# on first access, like the names above.
_SUBMODULES = (
    "backup", "cached", "callbacks", "data", "demo", "domain", "evaluate", "folders",
    "guards", "input_spec", "job", "linear_head", "model_file", "optimizers", "predict",
    "lora", "rank", "recipes", "registry", "report", "resizing", "saving", "training",
    "transferability",
)  # fmt: skip


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"zoo_transfer.{name}")
    raise AttributeError(f"module 'zoo_transfer' has no attribute {name!r}")


__all__ = [
    "ArgumentError",
    "ExportError",
    "MissingExtraError",
    "export",
    "BuildArgumentError",
    "EpochSeeding",
    "GradualUnfreezing",
    "GroupedOptimizer",
    "ProgressiveResizing",
    "Card",
    "CardValidationError",
    "DuplicateModelError",
    "PluginWarning",
    "UnknownModelError",
    "WeightsCorruptError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "ZooTransferError",
    "__version__",
    "adapt_batchnorm",
    "build",
    "card_from_preset",
    "feature_extractor",
    "fine_tune",
    "fit_linear_head",
    "fit_transfer",
    "get_card",
    "list_models",
    "load_lora",
    "load_teachable_machine",
    "lr_find",
    "register_model",
    "resize_model",
    "save_lora",
    "transfer_optimizer",
    "wise_ft",
    "wise_ft_sweep",
]
