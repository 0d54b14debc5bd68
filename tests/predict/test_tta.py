"""Test-time flips: `evaluate(..., tta="flip")` and `predict_files(..., tta="flip")` score the
mean of each image's and its mirror image's probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zoo_transfer.errors import BuildArgumentError


@pytest.fixture
def model_and_images(fresh_keras):
    import zoo_transfer

    fresh_keras.utils.set_random_seed(0)
    model = zoo_transfer.build("digitnet", 3)
    x = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    return model, x


def test_flip_averages_the_image_and_its_mirror(model_and_images):
    from zoo_transfer.evaluate import evaluate

    model, x = model_and_images
    y = np.array([0, 1, 2, 0, 1, 2])
    plain = np.asarray(model.predict(x, verbose=0))
    mirrored = np.asarray(model.predict(x[:, :, ::-1], verbose=0))
    assert not np.allclose(plain, mirrored), "random images are not mirror-symmetric"
    expected = (plain + mirrored) / 2
    result = evaluate(model, (x, y), ["a", "b", "c"], tta="flip")
    np.testing.assert_array_equal(result.y_pred, expected.argmax(axis=1))
    np.testing.assert_allclose(result.probability, expected.max(axis=1), rtol=1e-5)
    none = evaluate(model, (x, y), ["a", "b", "c"])
    np.testing.assert_allclose(none.probability, plain.max(axis=1), rtol=1e-5)


def test_predict_files_with_flips_equals_the_mean(model_and_images, tmp_path):
    from zoo_transfer.data import load_image
    from zoo_transfer.predict import predict_files

    model, x = model_and_images
    paths = []
    for i, image in enumerate(x[:3].astype("uint8")):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    preds = predict_files(model, paths, class_names=["a", "b", "c"], image_size=(32, 32),
                          top_k=3, tta="flip")  # fmt: skip
    images = np.stack([load_image(p, (32, 32)) for p in paths])
    mean = (np.asarray(model.predict(images, verbose=0))
            + np.asarray(model.predict(images[:, :, ::-1], verbose=0))) / 2  # fmt: skip
    for pred, row in zip(preds, mean, strict=True):
        top = {name: p for name, _, p in pred.top}
        np.testing.assert_allclose([top[n] for n in "abc"], row, rtol=1e-5)


def test_crop_averages_the_image_and_its_zoomed_centre(model_and_images):
    from zoo_transfer.evaluate import evaluate
    from zoo_transfer.predict import tta_views

    model, x = model_and_images
    y = np.zeros(len(x), int)
    ramp = np.broadcast_to(np.linspace(0, 248, 32, dtype="float32")[None, None, :, None],
                           (1, 32, 32, 3))  # fmt: skip
    views = tta_views(ramp, "crop", 0.75)
    assert len(views) == 2 and views[1].shape == ramp.shape
    # the centre 24 of 32 columns (4 to 27), scaled back to 32: the ramp from 32 to 216
    zoomed = views[1][0, 16, :, 0]
    assert zoomed[0] == pytest.approx(32, abs=6) and zoomed[-1] == pytest.approx(216, abs=6)
    assert np.all(np.diff(zoomed) > 0) and np.allclose(views[0], ramp)
    plain = np.asarray(model.predict(x, verbose=0))
    zoomed = np.asarray(model.predict(tta_views(x, "crop", 0.75)[1], verbose=0))
    result = evaluate(model, (x, y), ["a", "b", "c"], tta="crop", crop_fraction=0.75)
    np.testing.assert_allclose(result.probability, ((plain + zoomed) / 2).max(axis=1), rtol=1e-5)
    four = tta_views(x, "flip+crop", 0.75)
    assert len(four) == 4
    np.testing.assert_array_equal(four[3], four[1][:, :, ::-1])
    with pytest.raises(BuildArgumentError, match="crop fraction"):
        evaluate(model, (x, y), ["a", "b", "c"], tta="crop", crop_fraction=1.5)


def test_the_crop_fraction_comes_from_the_card(model_and_images):
    from zoo_transfer.input_spec import InputSpec
    from zoo_transfer.registry import get_card

    model, _ = model_and_images
    assert InputSpec.of_model(model).crop_fraction == get_card("digitnet").preprocessing.crop_pct


def test_an_unknown_tta_names_the_choices(model_and_images):
    from zoo_transfer.evaluate import evaluate

    model, x = model_and_images
    with pytest.raises(BuildArgumentError, match="none, flip, crop, flip\\+crop"):
        evaluate(model, (x, np.zeros(len(x), int)), ["a", "b", "c"], tta="rotate")
