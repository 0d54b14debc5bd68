"""Malformed cards fail on load with an error naming the file, the card and the field."""

from __future__ import annotations

import json

import pytest

from zoo_transfer import CardValidationError
from zoo_transfer.registry import get_card, load_family_file


def _family(**card_changes):
    card = get_card("resnet50").to_dict()
    card.pop("name")
    card.pop("family")
    for key, value in card_changes.items():
        if value is None:
            card.pop(key)
        else:
            card[key] = value
    return json.dumps({"family": "resnet", "cards": [card]})


def test_good_family_file_loads():
    (card,) = load_family_file(_family(), "cards/resnet.json")
    assert card == get_card("resnet50")


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"params": "25M"}, "params", "integer"),
        ({"input_size": [224, 224]}, "input_size", "3"),
        ({"feature_layer": None}, "feature_layer", "is missing"),
        ({"feature_layer": "conv4_block6_out"}, "feature_layer", "last stage"),
        (
            {"stages": [{"name": "stage1", "layer": "x", "stride": 8, "shape": [1, 1, 1]}]},
            "stages[0].stride",
            "stride 4",
        ),
        (
            {
                "stages": [
                    {"name": "stage2", "layer": "x", "stride": 8, "shape": [1, 1, 1]},
                    {"name": "stem", "layer": "y", "stride": 2, "shape": [1, 1, 1]},
                ]
            },
            "stages[1].name",
            "out of order",
        ),
        (
            {
                "preprocessing": {
                    "mode": "caffee",
                    "channel_order": "BGR",
                    "scale": 1,
                    "mean": [0, 0, 0],
                    "std": [1, 1, 1],
                }
            },
            "preprocessing.mode",
            "caffe, tf, torch, builtin",
        ),
        (
            {
                "preprocessing": {
                    "mode": "tf",
                    "channel_order": "RGB",
                    "scale": 1,
                    "mean": [0, 0, 0],
                    "std": [1, 0, 1],
                }
            },
            "preprocessing.std",
            "positive",
        ),
        (
            {"weights_top": {"file": "w.h5", "url": "ftp://x", "hash": None}},
            "weights_top.url",
            "https?",
        ),
        (
            {"weights_top": {"file": "w.h5", "url": "https://x/w.h5", "hash": "abc"}},
            "weights_top.hash",
            "md5 or sha256",
        ),
        ({"licence": "MIT"}, "licence", "unknown field"),
        ({"arch": "Res Net"}, "arch", "does not match"),
        ({"params_no_top": 99999999999}, "params_no_top", "more than params"),
        (  # a nested reference names a block inside an encoder layer: blocks only
            {"stages": [{"name": "stem", "layer": "enc/b1", "stride": 2, "shape": [1, 1, 1]}]},
            "stages[0].layer",
            "layer name",
        ),
        (  # and never the last stage, which the feature layer must be
            {
                "stages": [
                    {"name": "stem", "layer": "x", "stride": 16, "shape": [1, 1, 1]},
                    {"name": "block1", "layer": "enc/b1", "stride": 16, "shape": [1, 1, 1]},
                ]
            },
            "stages[1]",
            "must be a tensor",
        ),
    ],
)
def test_malformed_card_names_file_card_and_field(changes, field, words):
    with pytest.raises(CardValidationError) as info:
        load_family_file(_family(**changes), "cards/resnet.json")
    message = str(info.value)
    assert message.startswith("cards/resnet.json")
    assert f"field {field!r}" in message
    assert words in message
    assert info.value.field == field


def test_malformed_file_names_the_file():
    with pytest.raises(CardValidationError, match="my.json.*invalid JSON"):
        load_family_file("{not json", "my.json")
    with pytest.raises(CardValidationError, match="my.json.*'cards'"):
        load_family_file(json.dumps({"family": "x", "cards": []}), "my.json")


def test_registry_with_a_malformed_card_file_names_it(tmp_path):
    from zoo_transfer.registry import Registry

    (tmp_path / "good.json").write_text(_family())
    (tmp_path / "zzz_bad.json").write_text(_family(stages=[]))
    registry = Registry(plugins=False, cards_dir=str(tmp_path))
    with pytest.raises(CardValidationError) as info:
        registry.names()
    assert "zzz_bad.json" in str(info.value) and info.value.field == "stages"


def test_cards_are_hashable_and_compare_by_value():
    card = get_card("resnet50")
    assert {card: 1}[get_card("ResNet50")] == 1


def test_a_nested_block_stage_is_no_cut_point():
    """ViT's blocks run inside keras-hub's encoder layer: stages, but not cut stages."""
    card = get_card("vit_base_patch16_224")
    assert card.stage("block3").nested and card.stage("block3").layer.endswith("_3")
    assert [s.name for s in card.cut_stages] == ["stem", "block12"]
    assert not any(s.nested for s in get_card("resnet50").stages)


def test_a_transformer_may_read_its_own_pooling_layer_after_the_last_stage():
    """SigLIP's feature layer is its attention-pooling head, after the last block; it may
    not name a stage, and a CNN's must be its last stage."""
    card = get_card("siglip_base_patch16_224").to_dict()
    card.pop("name")
    assert card["feature_layer"] == "sig_lip_vision_encoder_head"
    (loaded,) = load_family_file(json.dumps({"family": "hub_siglip", "cards": [card]}), "s.json")
    assert loaded.feature_layer != loaded.stages[-1].layer
    card["feature_layer"] = card["stages"][3]["layer"]  # block3's tokens
    with pytest.raises(CardValidationError, match="own pooling layer after it"):
        load_family_file(json.dumps({"family": "hub_siglip", "cards": [card]}), "s.json")
