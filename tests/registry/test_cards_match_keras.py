"""Every card, checked against the real Keras model it describes (like timm's sweep).

Parametrised over the registry: a fast subset by default, every card with
`pytest --sweep=full` (what `.ci/run` runs). Each card's models are built once
(`card_sweep.build_card`) and every fact is checked on those builds (`card_sweep.card_problems`):
stages (layer, shape, channels, stride), head and feature layers, parameter counts with
and without the top, the weights file, URL, hash and cache folder Keras requests, the
default and smallest input size, and the normalisation against Keras' own.
"""

from __future__ import annotations

import dataclasses

import pytest
from card_sweep import build_card, card_problems, forget_builds

from zoo_transfer.registry import get_card

pytestmark = pytest.mark.sweep


def test_card_matches_keras(card_name, fresh_keras):
    card = get_card(card_name)
    problems = card_problems(card, build_card(card))
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def mobilenet_builds():
    """The smallest real card's builds, shared by the wrong-card checks below."""
    card = get_card("mobilenet.a025_128")
    builds = build_card(card)
    yield card, builds
    forget_builds()


def _stage(card, **changes):
    return (dataclasses.replace(card.stages[1], **changes),) + card.stages[2:]


def _weights(declared, **changes):
    return dataclasses.replace(declared, **changes)


WRONG = {
    "stage shape": lambda c: {"stages": c.stages[:1] + _stage(c, shape=(9, 9, 9))},
    "stage layer": lambda c: {"stages": c.stages[:1] + _stage(c, layer="no_such_layer")},
    "params": lambda c: {"params": c.params + 1},
    "params_no_top": lambda c: {"params_no_top": c.params_no_top - 1},
    "head layer": lambda c: {"head_layers": (*c.head_layers, "conv_pw_13")},
    "feature layer": lambda c: {"feature_layer": "conv_pw_11_relu"},
    "num_classes": lambda c: {"num_classes": 1001},
    "weights hash": lambda c: {"weights_top": _weights(c.weights_top, hash="0" * 64)},
    "weights file": lambda c: {"weights_no_top": _weights(c.weights_no_top, file="x.h5")},
    "input size": lambda c: {"input_size": (224, 224, 3)},
    "normalisation": lambda c: {
        "preprocessing": dataclasses.replace(c.preprocessing, mean=(127.0, 127.5, 127.5))
    },
}


@pytest.mark.parametrize("wrong", sorted(WRONG))
def test_a_wrong_card_fails_the_sweep(mobilenet_builds, wrong):
    card, builds = mobilenet_builds
    assert card_problems(card, builds) == []  # the real card passes on these builds
    bad = dataclasses.replace(card, **WRONG[wrong](card))
    problems = card_problems(bad, builds)
    assert problems, f"a card with a wrong {wrong} passed the sweep"
    assert all(p.startswith(card.name) for p in problems)
