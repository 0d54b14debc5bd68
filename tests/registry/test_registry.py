"""Lookup, listing and registration of cards."""

from __future__ import annotations

import inspect

import pytest

import zoo_transfer
from zoo_transfer import DuplicateModelError, UnknownModelError
from zoo_transfer.registry import REGISTRY, Registry, _registry, card_from_dict, get_card


def test_every_keras_application_has_a_card():
    import keras

    constructors = {
        n for n, f in vars(keras.applications).items() if inspect.isfunction(f) and n[0].isupper()
    }
    assert len(constructors) >= 40
    carded = {get_card(n).constructor for n in zoo_transfer.list_models()}
    assert constructors <= carded, sorted(constructors - carded)


def test_published_variants_are_addressable():
    mobilenet = zoo_transfer.list_models(family="mobilenet")
    assert len(mobilenet) == 16  # alpha 0.25/0.5/0.75/1.0 x 128/160/192/224
    assert len(zoo_transfer.list_models(family="mobilenet_v2")) == 30  # 6 alphas x 5 sizes
    assert len(zoo_transfer.list_models("mobilenet_v3_*")) == 6
    card = get_card("mobilenet_v2.a035_96")
    assert card.kwargs == {"alpha": 0.35}
    assert card.input_size == (96, 96, 3)
    assert card.weights_top.file.endswith("0.35_96.h5")
    assert get_card("mobilenet_v3_large.minimalistic").kwargs["minimalistic"] is True


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("resnet50", "resnet50.imagenet"),
        ("ResNet50", "resnet50.imagenet"),
        ("resnet50.imagenet", "resnet50.imagenet"),
        ("MobileNetV2", "mobilenet_v2.a100_224"),
        ("mobilenet_v2", "mobilenet_v2.a100_224"),
        ("MobileNetV2.a035_96", "mobilenet_v2.a035_96"),
        ("EfficientNetV2B0", "efficientnet_v2_b0.imagenet"),
        ("efficientnetv2-b0", "efficientnet_v2_b0.imagenet"),
        ("ConvNeXtTiny", "convnext_tiny.imagenet"),
        ("mobilenet_v3_small", "mobilenet_v3_small.a100"),
    ],
)
def test_names_and_aliases_resolve(query, expected):
    assert get_card(query).name == expected


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownModelError) as info:
        get_card("resnet5")
    assert "resnet50.imagenet" in info.value.suggestions or "resnet50" in info.value.suggestions
    assert "Did you mean" in str(info.value)
    with pytest.raises(UnknownModelError):
        get_card("mobilenet_v2.a999_96")  # known arch, unknown tag


def test_list_models_pattern_and_family():
    resnets = zoo_transfer.list_models("resnet*")
    assert "resnet50.imagenet" in resnets and "resnet152_v2.imagenet" in resnets
    assert all(n.startswith("resnet") for n in resnets)
    assert zoo_transfer.list_models(family="efficientnet") == [
        f"efficientnet_b{i}.imagenet" for i in range(8)
    ]
    assert zoo_transfer.list_models("no_such_thing*") == []


def test_cut_points_and_facts_of_resnet50():
    card = get_card("resnet50")
    assert [s.layer for s in card.stages[1:]] == [
        "conv2_block3_out",
        "conv3_block4_out",
        "conv4_block6_out",
        "conv5_block3_out",
    ]
    assert [s.stride for s in card.stages] == [2, 4, 8, 16, 32]
    assert card.stage("stage4").channels == 2048
    assert card.feature_layer == "conv5_block3_out"
    with pytest.raises(KeyError, match="stage1, stage2"):
        card.stage("stage9")


def test_rgb01_view_of_the_normalisation():
    caffe = get_card("resnet50").preprocessing
    assert caffe.mean_rgb01 == pytest.approx((123.68 / 255, 116.779 / 255, 103.939 / 255))
    assert caffe.std_rgb01 == pytest.approx((1 / 255,) * 3)
    tf_mode = get_card("xception").preprocessing
    assert tf_mode.mean_rgb01 == pytest.approx((0.5,) * 3)
    assert tf_mode.std_rgb01 == pytest.approx((0.5,) * 3)
    torch = get_card("densenet121").preprocessing
    assert torch.mean_rgb01 == pytest.approx((0.485, 0.456, 0.406))
    assert torch.std_rgb01 == pytest.approx((0.229, 0.224, 0.225))


def test_card_round_trips_through_dict():
    for name in ("resnet50", "convnext_tiny", "mobilenet_v3_small.minimalistic"):
        card = get_card(name)
        assert card_from_dict(card.to_dict()) == card


def _my_card(arch="my_resnet", tag="imagenet"):
    d = get_card("resnet50").to_dict()
    d.pop("name")
    d.update(arch=arch, tag=tag, aliases=["MyResNet"])
    return d


def test_register_model_and_duplicates(monkeypatch):
    monkeypatch.setattr(_registry, "REGISTRY", Registry(plugins=False))
    card = zoo_transfer.register_model(_my_card())
    assert zoo_transfer.get_card("MyResNet") is card
    assert "my_resnet.imagenet" in zoo_transfer.list_models("my_*")
    with pytest.raises(DuplicateModelError, match="override=True"):
        zoo_transfer.register_model(_my_card())
    replaced = zoo_transfer.register_model(dict(_my_card(), license="Proprietary"), override=True)
    assert zoo_transfer.get_card("my_resnet").license == "Proprietary"
    assert replaced.license == "Proprietary"
    with pytest.raises(DuplicateModelError):
        zoo_transfer.register_model(_my_card(arch="resnet50"))  # a built-in name


def test_global_registry_untouched_by_the_test_above():
    assert "my_resnet.imagenet" not in REGISTRY.names()
