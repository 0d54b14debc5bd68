"""Every card, checked against the real Keras model it describes (like timm's sweep).

Parametrised over the registry: a fast subset by default, every card with
`pytest --sweep=full` (what `.ci/run` runs). Models are built with `weights="imagenet"`
through `intercept_keras_weights`, which records Keras' download request instead of
downloading, so the weights file, URL and hash are checked offline.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from zoo_transfer.recipes import instantiate, resolve_tap
from zoo_transfer.registry import get_card
from zoo_transfer.registry._probe import imagenet_build

pytestmark = pytest.mark.sweep


def _stride(input_size: int, h: int) -> int:
    return 2 ** round(math.log2(input_size / h))


def test_structure_params_and_weights_match_keras(card_name, fresh_keras):
    card = get_card(card_name)
    top, rec_top = imagenet_build(card, include_top=True)

    # stages: each reference resolves (after other builds shifted Keras' auto names),
    # with the declared stride, channels and shape at the card's input size
    size = card.input_size[0]
    for stage in card.stages:
        tensor = resolve_tap(top, stage.layer)
        shape = tuple(int(d) for d in tensor.shape[1:])
        assert shape == stage.shape, f"{card.name} {stage.name} ({stage.layer}): {shape}"
        assert shape[2] == stage.channels
        assert _stride(size, shape[0]) == stage.stride, f"{card.name} {stage.name}"

    # head layers exist in the full model; the no-top model ends at the feature layer
    names = {layer.name for layer in top.layers}
    assert set(card.head_layers) <= names, set(card.head_layers) - names
    assert card.head_layers, f"{card.name} declares no head layers"
    no_top, rec_no_top = imagenet_build(card, include_top=False)
    no_top_names = {layer.name for layer in no_top.layers}
    assert not set(card.head_layers) & no_top_names, "head layers must be the top only"
    feature = resolve_tap(top, card.feature_layer)
    assert tuple(feature.shape[1:]) == tuple(no_top.output.shape[1:])
    assert top.output.shape[-1] == card.num_classes

    # parameter counts
    assert top.count_params() == card.params
    assert no_top.count_params() == card.params_no_top

    # weights exactly as Keras requests them
    for record, declared in ((rec_top, card.weights_top), (rec_no_top, card.weights_no_top)):
        assert len(record.downloads) == 1
        got = record.downloads[0]
        assert declared is not None
        assert (got["file"], got["url"], got["hash"], got["cache_subdir"]) == (
            declared.file,
            declared.location,
            declared.hash,
            declared.cache_subdir,
        )

    # the default input size is the one Keras declares (when it declares one)
    if rec_top.default_size is not None:
        assert rec_top.default_size == size
    if rec_top.min_size is not None:
        assert card.min_input_size[0] == rec_top.min_size


def test_smallest_input_builds(card_name, fresh_keras):
    card = get_card(card_name)
    smallest = card.min_input_size
    model = instantiate(card, include_top=False, weights=None, input_shape=smallest)
    out = model.output.shape
    assert out[1] >= 1 and out[2] >= 1
    assert model.count_params() == card.params_no_top


def _builtin_preprocessing_output(card, keras):
    """Output of the model's own normalisation layers, as Keras builds it for ImageNet."""
    with warnings.catch_warnings():  # MobileNets warn that no weights exist at this size
        warnings.simplefilter("ignore", UserWarning)
        model, _ = imagenet_build(card, include_top=False, input_shape=card.min_input_size)
    pre = [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization))
    ]
    for layer in pre:
        if isinstance(layer, keras.layers.Normalization) and layer.input_mean is None:
            # EfficientNet (V1) adapts this layer from its weights file, which stores
            # the ImageNet mean and, by a known quirk, the std as the "variance"; Keras
            # compensates with the extra Rescaling it adds for weights="imagenet".
            layer.adapt_mean.assign(np.array([0.485, 0.456, 0.406]))
            layer.adapt_variance.assign(np.array([0.229, 0.224, 0.225]))
            layer.finalize_state()
    return model, pre


def test_normalisation_reproduces_keras(card_name, fresh_keras):
    keras = fresh_keras
    card = get_card(card_name)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(2, *card.min_input_size)).astype("float32")
    ours = card.preprocessing.normalize(images)
    module = getattr(keras.applications, card.preprocess_module)
    theirs = np.asarray(module.preprocess_input(images.copy()))

    model, pre = _builtin_preprocessing_output(card, keras)
    if card.preprocessing.mode == "builtin":
        # preprocess_input is a pass-through; the model's first layers normalise
        np.testing.assert_allclose(theirs, images)
        assert pre, f"{card.name}: mode 'builtin' but the model has no normalisation layer"
        sub = keras.Model(model.input, pre[-1].output)
        inside = np.asarray(sub(images))
        np.testing.assert_allclose(ours, inside, atol=1e-4, rtol=1e-5)
    else:
        assert not pre, f"{card.name}: the model normalises itself; mode should be 'builtin'"
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-5)
