"""`load_image` and `predict_files`: decoding, resizing, top-k."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo_transfer.errors import BuildArgumentError, ImageFileError, LabelMismatchError
from zoo_transfer.predict import (
    load_image,
    predict_files,
    predictions_json,
    predictions_table,
)


def test_rgb_gray_and_rgba_become_rgb_0_255(tmp_path, write_png):
    rgb = load_image(write_png(tmp_path / "c.png", (200, 100, 50)), (16, 12))
    assert rgb.shape == (16, 12, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb.reshape(-1, 3), [[200, 100, 50]] * (16 * 12), atol=0.01)
    gray = load_image(write_png(tmp_path / "g.png", 77, mode="L"), (8, 8))
    assert gray.shape == (8, 8, 3)
    np.testing.assert_allclose(gray, 77, atol=0.01)
    rgba = load_image(write_png(tmp_path / "a.png", (10, 20, 30, 128), mode="RGBA"), (8, 8))
    assert rgba.shape == (8, 8, 3)
    np.testing.assert_allclose(rgba.reshape(-1, 3), [[10, 20, 30]] * 64, atol=0.01)


def test_resize_keeps_a_gradient_in_range(tmp_path):
    from PIL import Image

    ramp = np.tile(np.linspace(0, 255, 64, dtype="float32"), (40, 1)).astype("uint8")
    Image.fromarray(np.stack([ramp] * 3, axis=-1)).save(tmp_path / "ramp.png")
    img = load_image(tmp_path / "ramp.png", (10, 16))
    assert img.shape == (10, 16, 3)
    assert 0 <= img.min() < 15 and 240 < img.max() <= 255
    assert np.all(np.diff(img[0, :, 0]) > 0)  # left to right stays increasing


def test_unreadable_images_are_named(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    with pytest.raises(ImageFileError, match="Cannot decode .*bad.jpg"):
        load_image(bad, (8, 8))
    with pytest.raises(ImageFileError, match="Cannot read image .*missing.png"):
        load_image(tmp_path / "missing.png", (8, 8))


def test_predict_files_reports_a_bad_file_when_asked_and_keeps_the_order(
    tmp_path, write_png, color_model
):
    model = color_model(("red", "blue"))
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    paths = [
        write_png(tmp_path / "1.png", (250, 0, 0)),
        bad,
        write_png(tmp_path / "2.png", (0, 0, 250)),
    ]
    kw = {"class_names": ["red", "blue"], "image_size": (32, 32), "batch_size": 2}
    with pytest.raises(ImageFileError, match="bad.jpg"):
        predict_files(model, paths, **kw)  # the default: stop at the first bad file
    preds = predict_files(model, paths, errors="report", **kw)
    assert [p.path for p in preds] == [str(p) for p in paths]
    assert [p.top[0][0] if p.top else None for p in preds] == ["red", None, "blue"]
    assert "bad.jpg" in preds[1].error and preds[1].to_dict()["error"] == preds[1].error
    assert "error" not in preds[0].to_dict()
    assert "  not predicted: " in predictions_table(preds)
    with pytest.raises(BuildArgumentError, match="'raise' or 'report'"):
        predict_files(model, paths, errors="skip", **kw)


def test_predict_files_gives_the_right_colour_top_first(tmp_path, write_png, color_model):
    model = color_model(("red", "blue"))
    paths = [
        write_png(tmp_path / "1.png", (250, 0, 0)),
        write_png(tmp_path / "2.png", (0, 0, 250), size=(100, 20)),
        write_png(tmp_path / "3.png", (120, 0, 100)),
    ]
    preds = predict_files(model, paths, class_names=["red", "blue"], image_size=(32, 32), top_k=5)
    assert [p.path for p in preds] == [str(p) for p in paths]
    assert [p.top[0][0] for p in preds] == ["red", "blue", "red"]
    assert all(len(p.top) == 2 for p in preds)  # top_k clipped to the number of classes
    name, index, prob = preds[0].top[0]
    assert (name, index) == ("red", 0)
    assert prob == pytest.approx(1 / (1 + np.exp(-2 * 0.05 * 250)), rel=1e-4)
    # mean red - blue = 20 -> logits +-1 -> p = sigmoid(2)
    assert preds[2].top[0][2] == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-4)
    for p in preds:
        assert sum(t[2] for t in p.top) == pytest.approx(1.0, abs=1e-5)


def test_batches_do_not_change_the_answers(tmp_path, write_png, color_model):
    model = color_model()
    paths = [write_png(tmp_path / f"{i}.png", (25 * i, 0, 255 - 25 * i)) for i in range(10)]
    kw = {"class_names": ["red", "blue"], "image_size": (32, 32)}
    one = predict_files(model, paths, batch_size=1, **kw)
    many = predict_files(model, paths, batch_size=4, **kw)
    assert [p.top[0][0] for p in one] == ["blue"] * 6 + ["red"] * 4  # red > blue from i=6
    for a, b in zip(one, many, strict=True):
        assert [t[:2] for t in a.top] == [t[:2] for t in b.top]
        np.testing.assert_allclose([t[2] for t in a.top], [t[2] for t in b.top], atol=1e-6)


def test_logits_and_sigmoid_outputs_give_probabilities(tmp_path, write_png, color_model):
    import keras

    path = write_png(tmp_path / "r.png", (130, 0, 110))
    logits = color_model(activation=None)
    (pred,) = predict_files(logits, [path], class_names=["red", "blue"], image_size=(32, 32))
    assert pred.top[0][0] == "red"
    assert pred.top[0][2] == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-4)

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(1, activation="sigmoid")
    out = dense(x)
    dense.set_weights([np.array([[0.05], [0.0], [-0.05]], "float32"), np.zeros(1, "float32")])
    binary = keras.Model(inputs, out)  # p(class 1) rises with red
    (pred,) = predict_files(binary, [path], class_names=["blue", "red"], image_size=(32, 32))
    assert [t[:2] for t in pred.top] == [("red", 1), ("blue", 0)]
    assert pred.top[0][2] == pytest.approx(1 / (1 + np.exp(-1.0)), rel=1e-4)


def test_wrong_arguments(tmp_path, write_png, color_model):
    model = color_model()
    path = write_png(tmp_path / "r.png", (200, 0, 0))
    with pytest.raises(LabelMismatchError, match="2 outputs but class_names has 3"):
        predict_files(model, [path], class_names=["a", "b", "c"], image_size=(32, 32))
    with pytest.raises(BuildArgumentError, match="Expected `top_k` to be a positive int"):
        predict_files(model, [path], class_names=["a", "b"], image_size=(32, 32), top_k=0)


def test_table_and_json_formats(tmp_path, write_png, color_model):
    path = write_png(tmp_path / "r.png", (200, 0, 0))
    preds = predict_files(color_model(), [path], class_names=["red", "blue"], image_size=(32, 32))
    rows = json.loads(predictions_json(preds))
    assert rows[0]["path"] == str(path)
    assert [t["rank"] for t in rows[0]["top"]] == [1, 2]
    assert set(rows[0]["top"][0]) == {"rank", "class", "index", "probability"}
    assert rows[0]["top"][0]["class"] == "red" and rows[0]["top"][0]["index"] == 0
    lines = predictions_table(preds).splitlines()
    assert lines[0] == str(path)
    assert lines[1].split()[:2] == ["1.", "red"] and lines[1].endswith("(class 0)")
