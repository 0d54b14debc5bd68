"""The domain is measured: the source head's confidence on your images against its own."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from zoo_transfer.domain import SIMILARITY_THRESHOLD, judge, measure_domain
from zoo_transfer.errors import ArgumentError


def test_similarity_runs_from_chance_to_the_heads_own_accuracy():
    k = 10
    sure = np.full((4, k), 0.0)
    sure[:, 0] = 0.8  # as sure as its own top-1 accuracy: similar, 1.0
    sure[:, 1:] = 0.2 / (k - 1)
    assert judge("m", sure, reference=0.8).similarity == pytest.approx(1.0)
    lost = np.full((4, k), 1.0 / k)  # knows nothing: 0.0
    measure = judge("m", lost, reference=0.8)
    assert measure.similarity == pytest.approx(0.0) and not measure.similar
    assert "different from" in measure.reason and "0.80 top-1" in measure.reason
    assert judge("m", sure, reference=0.8, threshold=1.01).similar is False
    with pytest.raises(ArgumentError, match="finite"):
        judge("m", np.full((2, 3), np.nan), reference=0.5)
    with pytest.raises(ArgumentError, match="reference"):
        judge("m", sure, reference=0.0)


def test_digits_look_like_digitnets_pretraining_and_noise_does_not(fresh_keras):
    from zoo_transfer.recipes.digitnet import demo_digits

    x, y, _, _, _ = demo_digits(seed=0, train_per_class=10)  # digits 5-9; it learned 0-4
    digits = measure_domain("digitnet", (x, y))
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (50, 32, 32, 3)).astype("uint8")
    other = measure_domain("digitnet", (noise, np.arange(50) % 5))
    assert digits.similar and digits.similarity >= SIMILARITY_THRESHOLD
    assert not other.similar and other.similarity < digits.similarity
    assert digits.images == 50 and digits.to_dict()["reason"] == digits.reason


def test_imagenet_photos_are_similar_and_clothes_different(shared_data, tmp_path, fresh_keras):
    weights = shared_data / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"
    photos = sorted((shared_data / "imagenet-sample").iterdir())
    for i, photo in enumerate(photos[:40]):  # any two "classes": only the images count
        (tmp_path / "inet" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, tmp_path / "inet" / "ab"[i % 2] / photo.name)
    inet = measure_domain("mobilenet.a025_224", tmp_path / "inet", weights=weights)
    clothes = measure_domain(
        "mobilenet.a025_224", shared_data / "fashion-mnist-small" / "val", weights=weights,
        max_images=60,
    )  # fmt: skip
    assert inet.similar and not clothes.similar
    assert inet.similarity > 0.85 and clothes.similarity < 0.6  # measured 0.97 and 0.45


def test_a_card_without_a_classifier_names_the_override(monkeypatch):
    import dataclasses

    import zoo_transfer.registry
    from zoo_transfer.registry import get_card

    no_top1 = dataclasses.replace(get_card("digitnet"), top1=None)
    monkeypatch.setattr(zoo_transfer.registry, "get_card", lambda name: no_top1)
    with pytest.raises(ArgumentError, match="--similar or --different"):
        measure_domain("digitnet", (np.zeros((2, 32, 32, 3)), np.arange(2)))
