"""Issue 15, point 6: pretrained models rank above random-weight copies of themselves.

Real MobileNet 0.25 ImageNet weights against random ones on 20 Fashion-MNIST images a
class (64 px), and the embedded DigitNet against a random DigitNet on held-out digits:
every random control's LogME must be below every real model's. The same runs give the
LEEP and the accuracy-by-stage checks. Each model is built once per module.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from zoo_transfer.rank import RANDOM, rank
from zoo_transfer.recipes.digitnet import demo_digits
from zoo_transfer.registry import get_card

MOBILENET = "mobilenet.a025_224"
WEIGHTS = Path("imagenet") / "mobilenet_v1_0.25_224.weights.h5"
PER_CLASS = 20


@pytest.fixture(scope="module")
def fashion(shared_data, tmp_path_factory) -> Path:
    """The first 20 training images of each Fashion-MNIST class, as a folder on disk."""
    source = shared_data / "fashion-mnist-small" / "train"
    root = tmp_path_factory.mktemp("fashion20")
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (root / folder.name).mkdir()
        for path in sorted(folder.glob("*.png"))[:PER_CLASS]:
            shutil.copy(path, root / folder.name / path.name)
    return root


@pytest.fixture(scope="module")
def mobilenet(fashion, shared_data):
    """Real weights, their random control (seed 0), with the stage probes; one more
    random copy (seed 1)."""
    real = rank(
        fashion, [MOBILENET], weights={MOBILENET: shared_data / WEIGHTS}, image_size=64,
        controls=True, stages=True, progress=False,
    )  # fmt: skip
    other = rank(fashion, MOBILENET, weights=None, image_size=64, seed=1, progress=False)
    return real, other


@pytest.fixture(scope="module")
def digits():
    x, y, _, _, names = demo_digits(seed=0, train_per_class=PER_CLASS)
    return x, y, names


@pytest.fixture(scope="module")
def digitnet(digits):
    x, y, _ = digits
    real = rank((x, y), "digitnet", controls=True, stages=True, progress=False)
    others = [rank((x, y), "digitnet", weights=None, seed=s, progress=False) for s in (1, 2)]
    return real, others


def _split(*results):
    rows = [row for result in results for row in result.rows]
    assert all(row.error is None for row in rows)
    real = [row for row in rows if row.weights != RANDOM]
    random = [row for row in rows if row.weights == RANDOM]
    return real, random


def test_random_mobilenets_rank_below_the_pretrained_one(mobilenet):
    real, random = _split(*mobilenet)
    assert len(real) == 1 and len(random) == 2
    assert max(r.logme for r in random) < min(r.logme for r in real)
    result = mobilenet[0]
    assert [r.weights == RANDOM for r in result.rows] == [False, True]  # best first
    assert result.n_images == 10 * PER_CLASS
    assert all(r.n_images == 10 * PER_CLASS and r.image_size == 64 for r in result.rows)
    # what the default head reads: the last three stages of alpha 0.25 (64, 128 and 256
    # channels), average- and max-pooled
    assert result.rows[0].feature_size == 2 * (64 + 128 + 256)


def test_random_digitnets_rank_below_the_pretrained_one(digitnet):
    real, random = _split(digitnet[0], *digitnet[1])
    assert len(real) == 1 and len(random) == 3
    assert max(r.logme for r in random) < min(r.logme for r in real)


def test_leep_comes_from_the_source_head_and_controls_have_none(mobilenet, digitnet):
    for result in (mobilenet[0], digitnet[0]):
        real, random = _split(result)
        assert all(r.leep is not None and -math.log(10) < r.leep < 0 for r in real)
        assert all(r.leep is None for r in random)


def test_stages_give_one_accuracy_per_stage_between_0_and_1(mobilenet, digitnet, tmp_path):
    for result, name in ((mobilenet[0], MOBILENET), (digitnet[0], "digitnet")):
        for row in result.rows:
            assert list(row.stage_accuracy) == list(get_card(name).stage_names)
            assert all(0.0 <= acc <= 1.0 for acc in row.stage_accuracy.values())
        best = max(result.rows[0].stage_accuracy.values())
        assert best >= 0.5  # the pretrained features: far above chance (0.1, 0.2)
        table = result.stage_table()
        assert all(stage.upper() in table for stage in get_card(name).stage_names)
    path = mobilenet[0].plot_stages(tmp_path / "plots" / "stages.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000


def test_json_has_the_documented_keys(mobilenet):
    data = json.loads(mobilenet[0].to_json())
    assert set(data) == {"source", "n_images", "classes", "models"}
    assert data["n_images"] == 10 * PER_CLASS and len(data["classes"]) == 10
    keys = {"rank", "model", "weights", "logme", "leep", "seconds", "feature_size",
            "n_images", "image_size", "stage_accuracy", "error", "features",
            "standardized"}  # fmt: skip
    for i, row in enumerate(data["models"], start=1):
        assert set(row) == keys
        assert row["rank"] == i and row["model"] == MOBILENET and row["error"] is None
        assert row["standardized"] is True  # the default
    assert data["models"][0]["weights"].endswith(WEIGHTS.name)
    assert data["models"][1]["weights"] == RANDOM and data["models"][1]["leep"] is None


def test_the_table_lists_the_models_best_first(mobilenet):
    lines = mobilenet[0].to_table().splitlines()
    assert lines[0].split()[:4] == ["RANK", "MODEL", "LOGME", "LEEP"]
    assert lines[1].startswith("1 ") and WEIGHTS.name in lines[1]
    assert lines[2].startswith("2 ") and "(random)" in lines[2]
    assert "200 images, 10 classes" in lines[3]
