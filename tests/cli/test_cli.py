"""The `zoo-transfer` command line: list, info, validate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from zoo_transfer.cli import cli
from zoo_transfer.registry import get_card, list_models


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


def test_list_table_fits_100_columns(run):
    result = run("list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "ZOO", "FAMILY", "INPUT", "PARAMS", "TOP-1"]
    assert max(len(line) for line in lines) <= 100
    row = next(line for line in lines if line.startswith("resnet50.imagenet"))
    assert row.split() == ["resnet50.imagenet", "keras", "resnet", "224x224", "25.6M", "74.9"]
    row = next(line for line in lines if line.startswith("dinov2_small.lvd142m"))
    assert row.split() == ["dinov2_small.lvd142m", "hub", "hub_dinov2", "518x518", "22.6M", "-"]
    assert lines[-1] == f"{len(list_models())} models"


def test_list_zoo_hub_lists_the_keras_hub_cards_only(run):
    rows = json.loads(run("list", "--zoo", "hub", "--format", "json").output)
    names = {r["name"] for r in rows}
    assert {"dinov2_small.lvd142m", "deit_tiny_distilled_patch16_224.imagenet"} <= names
    assert {r["zoo"] for r in rows} == {"hub"} and "resnet50.imagenet" not in names
    keras_rows = json.loads(run("list", "--zoo", "applications", "--format", "json").output)
    assert len(keras_rows) + len(rows) == len(list_models())


def test_list_json_has_every_model_with_its_input_size(run):
    result = run("list", "--format", "json")
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == list_models()
    by_name = {r["name"]: r for r in rows}
    assert by_name["mobilenet_v2.a035_96"]["input_size"] == [96, 96, 3]
    assert by_name["efficientnet_b7.imagenet"]["input_size"] == [600, 600, 3]
    assert by_name["nasnet_large.imagenet"]["constructor"] == "NASNetLarge"


def test_list_pattern_and_family(run):
    result = run("list", "convnext*", "--format", "json")
    assert len(json.loads(result.output)) == 5
    result = run("list", "--family", "vgg", "--format", "json")
    assert [r["name"] for r in json.loads(result.output)] == ["vgg16.imagenet", "vgg19.imagenet"]
    result = run("list", "nothing*")
    assert result.exit_code == 1 and "Families:" in result.output


def test_info_shows_stages_with_layers_and_shapes(run):
    result = run("info", "resnet50")
    assert result.exit_code == 0
    out = result.output
    for layer, shape in [
        ("conv2_block3_out", "56x56x256"),
        ("conv3_block4_out", "28x28x512"),
        ("conv4_block6_out", "14x14x1024"),
        ("conv5_block3_out", "7x7x2048"),
    ]:
        line = next(x for x in out.splitlines() if layer in x and x.startswith("stage"))
        assert shape in line
    assert "mode=caffe order=BGR" in out
    assert "resnet50_weights_tf_dim_ordering_tf_kernels.h5" in out
    assert "25,636,712" in out


def test_info_json_is_the_whole_card(run):
    result = run("info", "ResNet50", "--format", "json")
    data = json.loads(result.output)
    assert data["name"] == "resnet50.imagenet"
    assert data["preprocessing"]["mean_rgb01"][0] == pytest.approx(123.68 / 255)
    assert data["weights_no_top"]["hash"] == get_card("resnet50").weights_no_top.hash


def test_unknown_model_exits_2_with_suggestion():
    proc = subprocess.run(
        [sys.executable, "-m", "zoo_transfer", "info", "resnet5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Unknown model 'resnet5'" in proc.stderr and "resnet50" in proc.stderr


@pytest.mark.parametrize("command", [[], ["list"], ["info"], ["validate"]])
def test_every_command_has_help(run, command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_validate_reports_the_bad_field(run, tmp_path):
    card = get_card("resnet50").to_dict()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(card))
    result = run("validate", str(good))
    assert result.exit_code == 0 and "resnet50.imagenet" in result.output
    card["stages"][0]["stride"] = 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(card))
    result = CliRunner().invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "bad.json" in result.output and "stages[0].stride" in result.output


def test_info_prints_a_dotted_constructor_as_written():
    out = CliRunner().invoke(cli, ["info", "digitnet"]).output
    assert "zoo_transfer.recipes.digitnet:DigitNet()" in out
    assert "keras.applications.zoo_transfer" not in out
    assert "keras.applications.ResNet50(" in CliRunner().invoke(cli, ["info", "resnet50"]).output
