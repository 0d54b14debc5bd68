"""The registry sweep's machinery: build a card's Keras models once, then check every fact.

Each card needs three Keras builds, all with `weights="imagenet"` through
`intercept_keras_weights` (the download request is recorded, nothing is fetched):

- the full model at the card's input size, and the model without its top at that size.
  Their checks need only the graph (layer names, shapes, parameter counts, the weights
  request), so they are built inside `keras.StatelessScope(initialize_variables=False)`
  (`_graph_only`), where Keras creates the variables without running their initialisers,
  neither then nor when the scope ends: EfficientNetV2L's three builds take 12 s instead
  of 25 s (its 1,017 truncated-normal kernels were drawn at the scope's end).
- the model without its top at the smallest input size, also stateless; its
  normalisation layers are run with the few values they read given by a
  `StatelessScope` (`_run_normalisation`). Cards that differ only in their input size
  (the MobileNet size variants) share this build.

`card_problems` compares a card with its builds and returns every mismatch as a
sentence, so a wrong card reports all its wrong facts at once, and a test can show
that a deliberately wrong card fails.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo_transfer.recipes import resolve_tap
from zoo_transfer.recipes.probe import imagenet_build


@dataclass
class CardBuilds:
    """The three Keras builds a card is checked against, with their weight requests."""

    top: Any
    rec_top: Any
    no_top: Any
    rec_no_top: Any
    smallest: Any  # no top, at card.min_input_size


def smallest_key(card: Any) -> tuple:
    """Cards with the same key share their smallest-input build."""
    return (card.constructor, tuple(sorted(card.kwargs.items())), tuple(card.min_input_size))


_SMALLEST: dict[tuple, Any] = {}  # one entry: the sweep runs a key's cards together


@contextmanager
def _graph_only(**scope: Any) -> Iterator[None]:
    """A `keras.StatelessScope` whose variables are never initialised.

    Keras keeps the variables a stateless scope created in a global list and, by default,
    runs their initialisers when the scope ends; here they are dropped from that list
    instead, so no later scope initialises them either.
    """
    import keras
    from keras.src.backend.common import global_state

    key = "uninitialized_variables"
    before = list(global_state.get_global_attribute(key) or [])
    with keras.StatelessScope(initialize_variables=False, **scope):
        yield
    global_state.set_global_attribute(key, before)


def build_card(card: Any) -> CardBuilds:
    """Build `card`'s three models (the smallest one shared with the previous card if equal)."""
    with warnings.catch_warnings():  # MobileNets warn that no weights exist at some sizes
        warnings.simplefilter("ignore", UserWarning)
        with _graph_only():
            top, rec_top = imagenet_build(card, include_top=True)
            no_top, rec_no_top = imagenet_build(card, include_top=False)
            key = smallest_key(card)
            if key not in _SMALLEST:
                _SMALLEST.clear()
                _SMALLEST[key], _ = imagenet_build(
                    card, include_top=False, input_shape=card.min_input_size
                )
    return CardBuilds(top, rec_top, no_top, rec_no_top, _SMALLEST[key])


def forget_builds() -> None:
    """Drop the shared smallest-input build (before `keras.backend.clear_session`)."""
    _SMALLEST.clear()


def _stride(input_size: int, h: int) -> int:
    return 2 ** round(math.log2(input_size / h))


def card_problems(card: Any, builds: CardBuilds) -> list[str]:
    """Every way `card` disagrees with the Keras models it describes; empty when none."""
    problems: list[str] = []
    problems += _structure_problems(card, builds)
    problems += _weights_problems(card, builds)
    problems += _smallest_problems(card, builds)
    problems += _normalisation_problems(card, builds)
    return [f"{card.name}: {p}" for p in problems]


def _structure_problems(card: Any, b: CardBuilds) -> list[str]:
    out = []
    # stages: each reference resolves (after other builds shifted Keras' auto names),
    # with the declared stride, channels and shape at the card's input size
    size = card.input_size[0]
    for stage in card.stages:
        try:
            tensor = resolve_tap(b.top, stage.layer)
        except ValueError as err:
            out.append(f"stage {stage.name}: {err}")
            continue
        shape = tuple(int(d) for d in tensor.shape[1:])
        if shape != tuple(stage.shape):
            out.append(f"stage {stage.name} ({stage.layer}) has shape {shape}, card {stage.shape}")
        if shape[2] != stage.channels:
            out.append(f"stage {stage.name} has {shape[2]} channels, card {stage.channels}")
        if _stride(size, shape[0]) != stage.stride:
            out.append(
                f"stage {stage.name} has stride {_stride(size, shape[0])}, card {stage.stride}"
            )

    # head layers exist in the full model; the no-top model ends at the feature layer
    names = {layer.name for layer in b.top.layers}
    if not card.head_layers:
        out.append("declares no head layers")
    if missing := set(card.head_layers) - names:
        out.append(f"head layers {sorted(missing)} are not in the full model")
    no_top_names = {layer.name for layer in b.no_top.layers}
    if extra := set(card.head_layers) & no_top_names:
        out.append(f"head layers {sorted(extra)} are in the no-top model: they must be the top")
    try:
        feature = resolve_tap(b.top, card.feature_layer)
    except ValueError as err:
        out.append(f"feature layer: {err}")
    else:
        if tuple(feature.shape[1:]) != tuple(b.no_top.output.shape[1:]):
            out.append(
                f"feature layer {card.feature_layer} has shape {tuple(feature.shape[1:])}, "
                f"the no-top model ends at {tuple(b.no_top.output.shape[1:])}"
            )
        last = b.no_top.layers[-1].name
        if "+" not in card.feature_layer and last != card.feature_layer:
            out.append(f"feature layer {card.feature_layer}: the no-top model ends at {last}")
    if b.top.output.shape[-1] != card.num_classes:
        out.append(f"the full model has {b.top.output.shape[-1]} classes, card {card.num_classes}")

    # parameter counts
    if (n := b.top.count_params()) != card.params:
        out.append(f"the full model has {n} parameters, card params={card.params}")
    if (n := b.no_top.count_params()) != card.params_no_top:
        out.append(f"the no-top model has {n} parameters, card params_no_top={card.params_no_top}")
    return out


def _weights_problems(card: Any, b: CardBuilds) -> list[str]:
    out = []
    for which, record, declared in (
        ("weights_top", b.rec_top, card.weights_top),
        ("weights_no_top", b.rec_no_top, card.weights_no_top),
    ):
        if len(record.downloads) != 1 or declared is None:
            out.append(f"{which}: Keras asked for {record.downloads}, card {declared}")
            continue
        got = record.downloads[0]
        want = {
            "file": declared.file,
            "url": declared.location,
            "hash": declared.hash,
            "cache_subdir": declared.cache_subdir,
        }
        for key, value in want.items():
            if got[key] != value:
                out.append(f"{which}.{key}: Keras asks for {got[key]!r}, card {value!r}")
    # the default input size is the one Keras declares (when it declares one)
    if b.rec_top.default_size is not None and b.rec_top.default_size != card.input_size[0]:
        out.append(f"Keras' default size is {b.rec_top.default_size}, card {card.input_size}")
    if b.rec_top.min_size is not None and card.min_input_size[0] != b.rec_top.min_size:
        out.append(f"Keras' smallest size is {b.rec_top.min_size}, card {card.min_input_size}")
    return out


def _smallest_problems(card: Any, b: CardBuilds) -> list[str]:
    out = []
    shape = b.smallest.output.shape
    if not (shape[1] >= 1 and shape[2] >= 1):
        out.append(f"at the smallest size {card.min_input_size} the output is {shape}")
    if (n := b.smallest.count_params()) != card.params_no_top:
        out.append(f"at the smallest size the no-top model has {n} parameters")
    return out


def _builtin_layers(model: Any) -> list[Any]:
    """The model's own normalisation layers (Rescaling, Normalization), in order."""
    import keras

    return [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization))
    ]


def _run_normalisation(model: Any, pre: list[Any], images: np.ndarray) -> np.ndarray:
    """The model's input -> its last normalisation layer, run on `images`.

    The builds are stateless (their variables were never initialised), so the few
    variables this part of the graph reads get their values from a `StatelessScope`:
    EfficientNet (V1) adapts its Normalization layer from its weights file, which stores
    the ImageNet mean and, by a known quirk, the std as the "variance" (Keras compensates
    with the extra Rescaling it adds for weights="imagenet"); every other variable gets
    its initial value.
    """
    import keras

    part = keras.Model(model.input, pre[-1].output)
    adapted = {}
    for layer in pre:
        if isinstance(layer, keras.layers.Normalization) and layer.input_mean is None:
            adapted[id(layer.adapt_mean)] = np.array([0.485, 0.456, 0.406], "float32")
            adapted[id(layer.adapt_variance)] = np.array([0.229, 0.224, 0.225], "float32")
    mapping = []
    for v in part.variables:
        value = adapted.get(id(v))
        if value is None:
            value = v.value  # never initialised: Keras gives its initial value
        mapping.append((v, np.reshape(value, v.shape)))
    with _graph_only(state_mapping=mapping):
        for layer in pre:
            if isinstance(layer, keras.layers.Normalization):
                layer.finalize_state()  # mean and variance as constants, from the mapping
        return np.asarray(part(images))


def _normalisation_problems(card: Any, b: CardBuilds) -> list[str]:
    """The card's normalisation equals Keras' `preprocess_input` (or the model's own layers)."""
    import keras

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(2, *card.min_input_size)).astype("float32")
    ours = card.preprocessing.normalize(images)
    module = getattr(keras.applications, card.preprocess_module)
    theirs = np.asarray(module.preprocess_input(images.copy()))
    pre = _builtin_layers(b.smallest)
    if card.preprocessing.mode == "builtin":
        # preprocess_input is a pass-through; the model's first layers normalise
        if not np.allclose(theirs, images):
            return ["mode 'builtin' but preprocess_input changes the pixels"]
        if not pre:
            return ["mode 'builtin' but the model has no normalisation layer"]
        inside = _run_normalisation(b.smallest, pre, images)
        return _differs("the model's own normalisation", ours, inside)
    if pre:
        return ["the model normalises itself; mode should be 'builtin'"]
    return _differs(f"keras.applications.{card.preprocess_module}.preprocess_input", ours, theirs)


def _differs(what: str, ours: np.ndarray, theirs: np.ndarray) -> list[str]:
    if np.allclose(ours, theirs, atol=1e-4, rtol=1e-5):
        return []
    worst = float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))
    return [f"normalisation differs from {what} by up to {worst:.4g}"]
