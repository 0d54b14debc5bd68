"""LoRA: `build(..., lora_rank=r)`, `save_lora`, `load_lora`.

Tiny random presets (`hub_presets`): on a transformer what trains is the LoRA updates of
the attention query/value projections and the head; on a CNN (keras-hub's or a
keras.applications card) the LoRA updates of every Conv2D and Dense; every other
backbone weight (BatchNorm statistics included) stays as loaded; the adapter file alone
restores the trained model; the `.keras` file loads in plain Keras.
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
    for family in ("dinov2", "clip", "siglip", "resnet"):
        card = zoo_transfer.card_from_preset(hub_presets[family], name=f"lora_{family}.test")
        zoo_transfer.register_model(card, override=True)
        names[family] = card
    return names


@pytest.mark.parametrize(("family", "attentions"), [("clip", 0), ("siglip", 1)])
def test_lora_on_an_image_tower_adapts_query_and_value_of_every_attention(
    family, attentions, cards, hub_presets
):
    """Every block's; SigLIP's attention-pooling head has one more (keras-hub's
    `enable_lora` adapts every layer named query or value)."""
    card = cards[family]
    model = zoo_transfer.build(
        card.name, num_classes=3, weights=str(hub_presets[family]), lora_rank=4
    )
    trainable = [v.path for v in model.trainable_variables]
    adapted = ("lora_kernel", "query/bias", "value/bias")
    assert all(any(a in p for a in adapted) or p.startswith("head_") for p in trainable)
    count = 2 * 2 * (card.kwargs["num_layers"] + attentions)  # a, b x query, value
    assert sum("lora_kernel" in p for p in trainable) == count


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

    # the whole model, LoRA layers included, loads in plain Keras; so does a CNN's
    cnn, cnn_x = _trained_cnn_lora()
    expected = {}
    for stem, m, xs in (("m", model, x), ("cnn", cnn, cnn_x)):
        m.save(tmp_path / f"{stem}.keras")
        np.save(tmp_path / f"{stem}.npy", xs)
        expected[stem] = m.predict(xs, verbose=0)
    code = (
        "import json, sys, numpy as np, keras\n"
        "out = {s: keras.saving.load_model(s + '.keras').predict(np.load(s + '.npy'),"
        " verbose=0).tolist() for s in ('m', 'cnn')}\n"
        "out['imported'] = any(k.startswith('zoo_transfer') for k in sys.modules)\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert loaded.pop("imported") is False
    for stem, probs in loaded.items():
        np.testing.assert_allclose(np.array(probs), expected[stem], atol=1e-5, err_msg=stem)


def _trained_cnn_lora():
    """MobileNetV3Small (keras.applications, random init, 32 px) with LoRA, fitted once."""
    import keras

    model = zoo_transfer.build(
        "mobilenet_v3_small", num_classes=2, weights=None, input_shape=(32, 32, 3), lora_rank=2
    )
    x = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, np.array([0, 1] * 3), epochs=1, verbose=0)
    return model, x


@pytest.mark.parametrize("which", ["keras-hub resnet", "keras.applications mobilenet"])
def test_lora_on_a_cnn_adapts_its_convolutions_and_nothing_else(which, cards, hub_presets):
    """Keras' layer-level LoRA on every Conv2D and Dense of a CNN backbone: the kernels and
    BatchNorm statistics stay as loaded, the low-rank updates and the head train."""
    import keras

    if which.startswith("keras-hub"):
        card, weights = cards["resnet"], str(hub_presets["resnet"])
        name, shape = card.name, card.input_size
    else:
        name, weights, shape = "mobilenet_v3_small", None, (32, 32, 3)
    model = zoo_transfer.build(name, num_classes=2, weights=weights, input_shape=shape, lora_rank=2)
    backbone = zoo_transfer.recipes.stages.find_backbone(model)[0]
    convs = [x for x in backbone._flatten_layers() if isinstance(x, keras.layers.Conv2D)]
    assert convs and all(x.lora_enabled for x in convs)
    trainable = [v.path for v in model.trainable_variables]
    assert all("lora_kernel" in p or p.endswith("bias") or p.startswith("head_") for p in trainable)
    assert sum("lora_kernel" in p for p in trainable) == 2 * len(convs)
    frozen = {v.path: v.numpy() for v in model.non_trainable_variables}
    assert any("moving_mean" in p for p in frozen)  # BatchNorm: inference mode, fixed
    x = np.random.default_rng(0).uniform(0, 255, (6, *shape)).astype("float32")
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    before = {v.path: v.numpy() for v in model.trainable_variables if "lora_kernel_b" in v.path}
    model.fit(x, np.array([0, 1] * 3), epochs=2, verbose=0)
    for v in model.non_trainable_variables:
        np.testing.assert_array_equal(v.numpy(), frozen[v.path], err_msg=v.path)
    assert any(
        not np.array_equal(v.numpy(), before[v.path])
        for v in model.trainable_variables
        if v.path in before
    )


def test_lora_is_refused_where_it_does_not_apply(cards, hub_presets):
    with pytest.raises(BuildArgumentError, match="trainable_from"):
        zoo_transfer.build(
            cards["clip"].name, num_classes=2, weights=None, lora_rank=4, trainable_from="block2"
        )
    with pytest.raises(BuildArgumentError, match="positive int"):
        zoo_transfer.build(cards["clip"].name, num_classes=2, weights=None, lora_rank=0)
    plain = zoo_transfer.build(cards["clip"].name, num_classes=2, weights=None)
    with pytest.raises(WeightsMismatchError, match="no LoRA"):
        zoo_transfer.save_lora(plain, "unused.npz")
