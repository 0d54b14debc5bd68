"""`evaluate` and `image_folder`: metrics with known answers, class-name order, errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from zoo_transfer.errors import ImageFileError, LabelMismatchError
from zoo_transfer.evaluate import EvaluationResult, evaluate, image_folder


def test_image_folder_lists_classes_in_sorted_order(color_folder):
    folder = image_folder(color_folder)
    assert folder.class_names == ["blue", "red"]  # Keras' convention: sorted subfolders
    assert [p.name for p in folder.paths] == [
        "b0.png",
        "b1.jpg",
        "r0.png",
        "r1.png",
        "r2.png",
        "r9_blue.png",
    ]
    assert folder.labels.tolist() == [0, 0, 1, 1, 1, 1]


def test_image_folder_maps_subfolders_to_the_models_order(color_folder):
    folder = image_folder(color_folder, ["red", "green", "blue"])  # a subset is fine
    assert folder.class_names == ["red", "green", "blue"]
    assert folder.labels.tolist() == [2, 2, 0, 0, 0, 0]


def test_known_confusion_matrix_and_metrics(color_folder, color_model):
    result = evaluate(color_model(("red", "blue")), color_folder, ["red", "blue"], batch_size=4)
    # red/: 3 red + 1 blue image (mislabelled as red); blue/: 2 blue images
    assert result.num_samples == 6
    assert result.confusion_matrix.tolist() == [[3, 1], [0, 2]]
    assert result.accuracy == pytest.approx(5 / 6)
    np.testing.assert_allclose(result.precision, [1.0, 2 / 3])
    np.testing.assert_allclose(result.recall, [0.75, 1.0])
    assert result.support.tolist() == [4, 2]
    (wrong,) = result.misclassified()
    assert wrong["item"].endswith("red/r9_blue.png")
    assert (wrong["true"], wrong["predicted"]) == ("red", "blue")
    assert wrong["probability"] > 0.99
    samples = {s["item"].rsplit("/", 2)[-1]: s for s in result.samples()}
    assert samples["b1.jpg"]["predicted"] == "blue" and samples["b1.jpg"]["correct"]


def test_model_label_order_is_respected(color_folder, color_model):
    """A model whose output 0 is "blue": labels map by name, not folder position."""
    result = evaluate(color_model(("blue", "red")), color_folder, ["blue", "red"])
    assert result.confusion_matrix.tolist() == [[2, 0], [1, 3]]
    assert result.accuracy == pytest.approx(5 / 6)


def test_zero_division_is_safe_and_silent():
    result = EvaluationResult(
        class_names=["a", "b", "c"],
        y_true=np.array([0, 0, 1]),
        y_pred=np.array([0, 1, 1]),
        probability=np.array([0.9, 0.8, 0.7]),
        items=["x", "y", "z"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p, r = result.precision, result.recall
        text = result.to_table()
    np.testing.assert_allclose(p, [1.0, 0.5, 0.0])  # c is never predicted
    np.testing.assert_allclose(r, [0.5, 1.0, 0.0])  # c never occurs
    rows = text.splitlines()[3:6]
    assert [r.split()[0] for r in rows[:2]] == ["a", "b"] and rows[2] == ""  # no row for c


def test_arrays_one_hot_and_datasets_agree(color_model):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (10, 32, 32, 3)).astype("float32")
    x[:5, ..., 0] += 100  # redder
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    model = color_model()
    a = evaluate(model, (x, y), ["red", "blue"], batch_size=3)
    b = evaluate(model, (x, np.eye(2)[y]), ["red", "blue"])
    c = evaluate(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4), ["red", "blue"])
    expected_pred = (x[..., 0].mean(axis=(1, 2)) <= x[..., 2].mean(axis=(1, 2))).astype(int)
    for r in (a, b, c):
        assert r.y_pred.tolist() == expected_pred.tolist()
        assert r.y_true.tolist() == y.tolist()
    assert a.items[:2] == ["#0", "#1"]


def test_json_has_the_documented_keys(color_folder, color_model):
    result = evaluate(color_model(), color_folder, ["red", "blue"])
    data = json.loads(result.to_json())
    assert set(data) == {
        "accuracy",
        "num_samples",
        "classes",
        "confusion_matrix",
        "misclassified",
        "samples",
    }
    assert data["classes"][0] == {"name": "red", "precision": 1.0, "recall": 0.75, "support": 4}
    assert data["confusion_matrix"] == [[3, 1], [0, 2]]
    assert len(data["samples"]) == 6 and len(data["misclassified"]) == 1
    assert set(data["samples"][0]) == {
        "item",
        "true",
        "true_index",
        "predicted",
        "predicted_index",
        "probability",
        "correct",
    }


def test_table_report(color_folder, color_model):
    text = evaluate(color_model(), color_folder, ["red", "blue"]).to_table()
    lines = text.splitlines()
    assert lines[0] == "accuracy 0.8333 (5/6)"
    assert lines[2].split() == ["CLASS", "PRECISION", "RECALL", "SUPPORT"]
    assert lines[3].split() == ["red", "1.000", "0.750", "4"]
    assert lines[4].split() == ["blue", "0.667", "1.000", "2"]
    matrix = lines[lines.index(next(x for x in lines if x.startswith("confusion"))) + 1 :][:2]
    assert [m.split() for m in matrix] == [["red", "3", "1"], ["blue", "0", "2"]]
    assert "r9_blue.png  red -> blue" in text


def test_folder_classes_must_be_model_labels(color_folder, color_model):
    with pytest.raises(
        LabelMismatchError, match=r"Subfolders \['blue'\].*Received: \['blue', 'red'\]"
    ):
        evaluate(color_model(), color_folder, ["red", "green"])
    with pytest.raises(LabelMismatchError, match="embed_labels"):
        image_folder(color_folder, ["0", "1"])


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(ImageFileError, match="No folder at"):
        image_folder(tmp_path / "nope")
    with pytest.raises(ImageFileError, match="has no subfolders"):
        image_folder(tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.txt").write_text("x")
    with pytest.raises(ImageFileError, match="No images under"):
        image_folder(tmp_path)


def test_labels_out_of_range(color_model):
    x = np.zeros((2, 32, 32, 3), "float32")
    with pytest.raises(LabelMismatchError, match=r"integer labels in \[0, 2\)"):
        evaluate(color_model(), (x, np.array([0, 5])), ["red", "blue"])
