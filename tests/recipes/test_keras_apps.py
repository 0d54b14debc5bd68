"""Card -> Keras model helpers: building from a card, resolving layer references."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from zoo_transfer.errors import CardValidationError, LayerReferenceError
from zoo_transfer.recipes import constructor, instantiate, resolve_tap
from zoo_transfer.registry import get_card


@pytest.fixture
def tiny(fresh_keras):
    keras = fresh_keras
    inp = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inp)
    b = keras.layers.Activation("relu")(a)  # auto-named
    c = keras.ops.add(b, b)  # a bare op, no layer
    d = keras.layers.Conv2D(2, 1, name="conv_b")(c)
    e = keras.layers.Conv2D(2, 1, name="conv_c")(c)  # c has two consumers
    return keras.Model(inp, [d, e], name="tiny")


def test_plain_name_and_hops(tiny):
    assert resolve_tap(tiny, "conv_a") is tiny.get_layer("conv_a").output
    relu = resolve_tap(tiny, "conv_a+1")
    assert relu is next(
        layer.output for layer in tiny.layers if layer.name.startswith("activation")
    )
    add = resolve_tap(tiny, "conv_a+2")
    x = np.ones((1, 8, 8, 3), "float32")
    import keras

    sub = keras.Model(tiny.input, [relu, add])
    r, s = sub(x)
    np.testing.assert_allclose(np.asarray(s), 2 * np.asarray(r), rtol=1e-6)


def test_bad_references_name_the_problem(tiny):
    with pytest.raises(LayerReferenceError, match="'nope' .*not in model 'tiny'"):
        resolve_tap(tiny, "nope")
    with pytest.raises(LayerReferenceError, match="ambiguous"):
        resolve_tap(tiny, "conv_a+3")  # the add feeds conv_b and conv_c
    with pytest.raises(LayerReferenceError, match="Bad layer reference"):
        resolve_tap(tiny, "conv_a+x")


def test_instantiate_uses_card_kwargs_and_size(fresh_keras):
    card = get_card("mobilenet_v2.a035_96")
    model = instantiate(card, include_top=False)
    assert model.input_shape == (None, 96, 96, 3)
    assert model.count_params() == card.params_no_top
    model = instantiate(card, include_top=False, input_shape=(64, 64, 3))
    assert model.input_shape == (None, 64, 64, 3)


def test_constructor_from_dotted_path_and_missing_name():
    card = get_card("resnet50")
    custom = dataclasses.replace(card, constructor="collections:OrderedDict")
    import collections

    assert constructor(custom) is collections.OrderedDict
    with pytest.raises(CardValidationError, match="no constructor 'ResNet9000'.*Upgrade Keras"):
        constructor(dataclasses.replace(card, constructor="ResNet9000"))
    with pytest.raises(CardValidationError, match="module 'no_such_pkg' cannot be imported"):
        constructor(dataclasses.replace(card, constructor="no_such_pkg:build"))
