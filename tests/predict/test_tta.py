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
    from zoo_transfer.predict import evaluate

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
    from zoo_transfer.predict import load_image, predict_files

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


def test_an_unknown_tta_names_the_choices(model_and_images):
    from zoo_transfer.predict import evaluate

    model, x = model_and_images
    with pytest.raises(BuildArgumentError, match="none, flip"):
        evaluate(model, (x, np.zeros(len(x), int)), ["a", "b", "c"], tta="rotate")
