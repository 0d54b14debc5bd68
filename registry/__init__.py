"""Model-zoo registry: cards for pretrained image models, and their lookup.

Installed as `zoo_transfer.registry`. Importing it never imports Keras/TensorFlow.
"""

from ._card import (
    LAYER_REF_RE,
    NESTED_REF_RE,
    Card,
    Preprocessing,
    Stage,
    Tokens,
    WeightsFile,
    card_from_dict,
    resolve_package_url,
)
from ._registry import (
    ENTRY_POINT_GROUP,
    REGISTRY,
    Registry,
    get_card,
    list_models,
    load_family_file,
    register_model,
)
from .imagenet import imagenet_class_index, imagenet_class_names

__all__ = [
    "LAYER_REF_RE",
    "NESTED_REF_RE",
    "Card",
    "ENTRY_POINT_GROUP",
    "Preprocessing",
    "REGISTRY",
    "Registry",
    "Stage",
    "Tokens",
    "WeightsFile",
    "card_from_dict",
    "get_card",
    "imagenet_class_index",
    "imagenet_class_names",
    "list_models",
    "load_family_file",
    "register_model",
    "resolve_package_url",
]
