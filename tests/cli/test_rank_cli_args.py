"""`zoo-transfer rank`'s options, checked before any model runs (in process)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from zoo_transfer.cli import cli
from zoo_transfer.cli.rank import parse_weights
from zoo_transfer.errors import ArgumentError


@pytest.fixture
def run():
    def invoke(*args):
        return CliRunner().invoke(cli, ["rank", *args], catch_exceptions=False)

    return invoke


def test_weights_pairs_are_parsed():
    assert parse_weights(("digitnet=w.h5", "resnet50=none", "vgg16=ImageNet")) == {
        "digitnet": "w.h5", "resnet50": None, "vgg16": "imagenet",
    }  # fmt: skip
    with pytest.raises(ArgumentError, match="NAME=FILE.*Received: 'w.h5'"):
        parse_weights(("w.h5",))


def test_bad_options_exit_2_with_the_fix(run, tmp_path):
    result = run("--data", str(tmp_path), "--models", "digitnet", "--plot", "p.png")
    assert result.exit_code == 2 and "add --stages" in result.output
    result = run("--data", str(tmp_path))
    assert result.exit_code == 2 and "Pass --models" in result.output
    result = run("--data", str(tmp_path), "--weights", "digitnet")
    assert result.exit_code == 2 and "--weights NAME=FILE" in result.output


def test_a_class_with_one_image_fails_naming_it(run, tmp_path, make_folder):
    root = make_folder(tmp_path / "data", per_class=3, classes=3)
    for extra in sorted((root / "7").glob("*.png"))[1:]:
        extra.unlink()
    result = run("--data", str(root), "--models", "digitnet", "--quiet")
    assert result.exit_code == 1
    assert "Error: Class '7' has 1 image(s)" in result.output


def test_an_unknown_model_exits_2(run, tmp_path, make_folder):
    root = make_folder(tmp_path / "data", per_class=2, classes=2)
    result = run("--data", str(root), "--models", "digitnet,digitnt", "--quiet")
    assert result.exit_code == 2 and "Unknown model 'digitnt'" in result.output


def test_raw_scores_the_features_as_they_are(run, tmp_path, make_folder):
    import json

    root = make_folder(tmp_path / "data", per_class=4, classes=3)
    rows = {}
    for flag in ("--standardize", "--raw"):
        result = run("--data", str(root), "--models", "digitnet", "--quiet", "--format",
                     "json", flag)  # fmt: skip
        assert result.exit_code == 0, result.output
        (rows[flag],) = json.loads(result.output)["models"]
    assert rows["--standardize"]["standardized"] is True
    assert rows["--raw"]["standardized"] is False
    assert rows["--raw"]["feature_size"] == rows["--standardize"]["feature_size"]
    assert rows["--raw"]["logme"] != pytest.approx(rows["--standardize"]["logme"], abs=1e-3)
