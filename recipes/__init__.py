"""Recipes: functions that turn a registry card into a Keras model.

Installed as `zoo_transfer.recipes`. Keras is imported lazily, on first use.
"""

from ._keras_apps import constructor, instantiate, resolve_tap

__all__ = ["constructor", "instantiate", "resolve_tap"]
