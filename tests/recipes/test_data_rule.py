"""The data-dependent defaults: epochs from the number of images, the side from their size."""

from __future__ import annotations

import pytest

from zoo_transfer import BuildArgumentError, recipes
from zoo_transfer.recipes import FINE_TUNE_FROM, data_defaults


@pytest.mark.parametrize(
    ("num_images", "epochs"),
    [(1, 5), (300, 5), (FINE_TUNE_FROM - 1, 5), (FINE_TUNE_FROM, 10), (20_000, 10)],
)
def test_epochs_follow_the_number_of_training_images(num_images, epochs):
    chosen = data_defaults(num_images)
    assert chosen.epochs == epochs
    assert f"{num_images:,} training images" in chosen.reasons["epochs"]
    assert f"{epochs} epochs" in chosen.reasons["epochs"]


@pytest.mark.parametrize(
    ("image_side", "model_side", "side"),
    [
        (28, 224, 128),  # small images, a large card: 128 px
        (64, 224, 128),
        (65, 224, None),  # larger images keep the card's size
        (500, 224, None),
        (28, 128, None),  # the card is no larger than 128: nothing to save
        (8, 32, None),
        (None, 224, None),  # sizes unknown (no readable header)
        (28, None, None),  # a model that takes any size
    ],
)
def test_the_side_follows_the_size_of_the_images(image_side, model_side, side):
    chosen = data_defaults(100, image_side=image_side, model_side=model_side)
    assert chosen.image_size == side
    if side is not None:
        assert f"{image_side} px" in chosen.reasons["image_size"]
        assert f"not the card's {model_side}" in chosen.reasons["image_size"]


def test_the_rest_is_what_the_sweep_chose_at_every_size():
    for n in (10, 50_000):
        chosen = data_defaults(n)
        assert (chosen.learning_rate, chosen.augment) == (1e-4, "light")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "100"])
def test_a_number_of_images_that_is_not_one_is_refused(bad):
    with pytest.raises(BuildArgumentError, match="num_images"):
        data_defaults(bad)


def test_lp_ft_takes_its_epochs_from_the_number_of_images(fresh_keras):
    kw = {"weights": None, "input_shape": (32, 32, 3)}
    assert recipes.lp_ft("digitnet", 3, **kw)[1].epochs == 5
    assert recipes.lp_ft("digitnet", 3, num_images=300, **kw)[1].epochs == 5
    model, plan = recipes.lp_ft("digitnet", 3, num_images=FINE_TUNE_FROM, **kw)
    assert plan.epochs == 10 and plan.learning_rate == 1e-4 and plan.probe
    assert model.output_shape == (None, 3)
