"""Recipes: functions that turn a registry card into a Keras model.

Installed as `zoo_transfer.recipes`. Keras is imported lazily, on first use.

Public modules beside this one: `stages` (the stage map other packages use),
`digitnet` (the embedded demo network and its digits), `probe` (Keras' ImageNet
build, intercepted: what the card sweep and the card generator check).
"""

from ._build import SOURCE_HEAD, build, feature_extractor, normalization_layer
from ._data_rule import FINE_TUNE_FROM, DataDefaults, data_defaults, epochs_for, side_for
from ._hub import fetch_preset, resized_weight
from ._hub_cards import card_from_preset
from ._keras_apps import constructor, instantiate, resolve_tap
from ._resize import rebuild_at
from ._situations import (
    LP_FT_HEAD,
    RECIPES,
    SMALL_DATASET,
    Plan,
    large_different,
    large_similar,
    lp_ft,
    lp_ft_features,
    small_different,
    small_similar,
    suggest,
)
from ._teachable import TeachableMachineModel, load_teachable_machine
from ._tfjs import read_tfjs_weights
from ._weights import imagenet_weights_file

__all__ = [
    "FINE_TUNE_FROM",
    "LP_FT_HEAD",
    "SMALL_DATASET",
    "RECIPES",
    "SOURCE_HEAD",
    "DataDefaults",
    "Plan",
    "TeachableMachineModel",
    "build",
    "card_from_preset",
    "constructor",
    "data_defaults",
    "epochs_for",
    "feature_extractor",
    "fetch_preset",
    "imagenet_weights_file",
    "instantiate",
    "large_different",
    "large_similar",
    "load_teachable_machine",
    "lp_ft",
    "lp_ft_features",
    "normalization_layer",
    "read_tfjs_weights",
    "rebuild_at",
    "resized_weight",
    "resolve_tap",
    "side_for",
    "small_different",
    "small_similar",
    "suggest",
]
