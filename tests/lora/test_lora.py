"""LoRA on keras-hub transformers: `build(..., lora_rank=r)`, `save_lora`, `load_lora`.

Tiny random presets (`hub_presets`): what trains is the LoRA updates of the attention
query/value projections and the head; every other backbone weight stays as loaded; the
adapter file alone restores the trained model; the `.keras` file loads in plain Keras.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import zoo_transfer
from zoo_transfer.errors import BuildArgumentError, WeightsMismatchError

pytest.importorskip("keras_hub", reason="keras-hub (the hub extra) is not installed")


@pytest.fixture(scope="module")
def cards(hub_presets):
    names = {}
    for family in ("dinov2", "clip", "resnet"):
        card = zoo_transfer.card_from_preset(hub_presets[family], name=f"lora_{family}.test")
        zoo_transfer.register_model(card, override=True)
        names[family] = card
    return names


def test_lora_on_clip_adapts_query_and_value_of_every_block(cards, hub_presets):
    card = cards["clip"]
    model = zoo_transfer.build(
        card.name, num_classes=3, weights=str(hub_presets["clip"]), lora_rank=4
    )
    trainable = [v.path for v in model.trainable_variables]
    adapted = ("lora_kernel", "query/bias", "value/bias")
    assert all(any(a in p for a in adapted) or p.startswith("head_") for p in trainable)
    assert sum("lora_kernel" in p for p in trainable) == 2 * 2 * card.kwargs["num_layers"]


def test_lora_trains_only_the_adapters_and_the_head_and_saves_on_its_own(
    cards, hub_presets, tmp_path
):
    import keras

    family = "dinov2"
    card, folder = cards[family], str(hub_presets[family])
    model = zoo_transfer.build(card.name, num_classes=3, weights=folder, lora_rank=4)
    trainable = [v.path for v in model.trainable_variables]
    # Keras' LoRA freezes a layer's kernel and leaves its bias trainable
    adapted = ("lora_kernel", "query/bias", "value/bias")
    assert all(any(a in p for a in adapted) or p.startswith("head_") for p in trainable)
    blocks = card.kwargs["num_layers"]
    assert sum("lora_kernel" in p for p in trainable) == 2 * 2 * blocks  # a, b x query, value
    total = model.count_params()
    n_train = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert n_train < 0.1 * total
    frozen = {v.path: v.numpy() for v in model.non_trainable_variables}
    x = np.random.default_rng(0).uniform(0, 255, (6, *card.input_size)).astype("float32")
    y = np.array([0, 1, 2] * 2)
    lora_before = {
        v.path: v.numpy() for v in model.trainable_variables if "lora_kernel_b" in v.path
    }
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    for v in model.non_trainable_variables:
        np.testing.assert_array_equal(v.numpy(), frozen[v.path], err_msg=v.path)
    assert any(
        not np.array_equal(v.numpy(), lora_before[v.path])
        for v in model.trainable_variables
        if v.path in lora_before
    )

    adapter = zoo_transfer.save_lora(model, tmp_path / "adapter.npz")
    assert adapter == tmp_path / "adapter.npz" and adapter.stat().st_size < 200_000
    fresh = zoo_transfer.build(card.name, num_classes=3, weights=folder, lora_rank=4)
    assert not np.allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0))
    zoo_transfer.load_lora(fresh, adapter)
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)

    wrong = zoo_transfer.build(card.name, num_classes=3, weights=folder, lora_rank=2)
    with pytest.raises(WeightsMismatchError, match="lora_rank"):
        zoo_transfer.load_lora(wrong, adapter)

    # the whole model, LoRA layers included, loads in plain Keras
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    code = (
        "import json, sys, numpy as np, keras\n"
        "m = keras.saving.load_model('m.keras')\n"
        "print(json.dumps([m.predict(np.load('x.npy'), verbose=0).tolist(),"
        " any(k.startswith('zoo_transfer') for k in sys.modules)]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    probs, imported = json.loads(run.stdout.strip().splitlines()[-1])
    assert imported is False
    np.testing.assert_allclose(np.array(probs), model.predict(x, verbose=0), atol=1e-5)


def test_lora_is_refused_where_it_does_not_apply(cards, hub_presets):
    with pytest.raises(BuildArgumentError, match="is a CNN"):
        zoo_transfer.build(cards["resnet"].name, num_classes=2, weights=None, lora_rank=4)
    with pytest.raises(BuildArgumentError, match="trainable_from"):
        zoo_transfer.build(
            cards["clip"].name, num_classes=2, weights=None, lora_rank=4, trainable_from="block2"
        )
    with pytest.raises(BuildArgumentError, match="positive int"):
        zoo_transfer.build(cards["clip"].name, num_classes=2, weights=None, lora_rank=0)
    plain = zoo_transfer.build(cards["clip"].name, num_classes=2, weights=None)
    with pytest.raises(WeightsMismatchError, match="no LoRA"):
        zoo_transfer.save_lora(plain, "unused.npz")
