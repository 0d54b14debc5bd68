"""One folder reader: training, validation, evaluate and predict see the same classes and files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from zoo_transfer.errors import DataError
from zoo_transfer.folders import IMAGE_EXTENSIONS, list_image_folder


@pytest.fixture
def messy(make_folder, tmp_path):
    """Three digit classes, with the junk real folders hold."""
    root = make_folder(tmp_path / "data", per_class=6, classes=3)
    for junk in (".ipynb_checkpoints", "__MACOSX", ".git"):
        shutil.copytree(root / "5", root / junk)
    shutil.copytree(root / "6", root / "6" / ".ipynb_checkpoints")  # hidden, inside a class
    shutil.copy(root / "7" / "000.png", root / "7" / "._000.png")  # macOS resource fork
    shutil.copy(root / "7" / "001.png", root / "7" / "001.WEBP.txt")  # not an image name
    shutil.copy(root / "7" / "002.png", root / "7" / "UPPER.PNG")  # any case
    return root


def test_hidden_folders_and_files_are_never_classes_or_samples(messy):
    listing = list_image_folder(messy)
    assert listing.class_names == ["5", "6", "7"]
    assert np.bincount(listing.labels).tolist() == [6, 6, 7]
    assert not any("/." in p or "__" in p for p in listing.paths)
    assert ".webp" in IMAGE_EXTENSIONS


def test_training_and_evaluation_read_the_same_files(messy):
    from zoo_transfer import data
    from zoo_transfer.evaluate import image_folder

    splits = data.load(str(messy), image_size=32, validation_split=None, augment="none")
    evaluated = image_folder(messy)
    assert splits.class_names == evaluated.class_names == ["5", "6", "7"]
    assert splits.num_train == len(evaluated.paths) == 19
    assert [str(p) for p in evaluated.paths] == list_image_folder(messy).paths


def test_a_class_without_a_readable_image_is_an_error_naming_it(messy):
    from zoo_transfer import data

    (messy / "8").mkdir()
    (messy / "8" / "broken.png").write_text("not an image")
    with pytest.raises(DataError, match=r"\['8'\].*no readable image"):
        data.load(str(messy), image_size=32, validation_split=None, augment="none")


def test_an_explicit_flag_drops_the_empty_class_with_a_warning(messy):
    from zoo_transfer import data
    from zoo_transfer.errors import DataWarning

    (messy / "6a").mkdir()  # sorts between 6 and 7: the classes after it are renumbered
    (messy / "6a" / "broken.png").write_text("not an image")
    with pytest.raises(DataError, match=r"--drop-empty-classes"):
        data.load(str(messy), image_size=32, validation_split=None, augment="none")
    with pytest.warns(DataWarning, match=r"\['6a'\].*left out.*3 classes"):
        splits = data.load(
            str(messy), image_size=32, validation_split=None, augment="none",
            drop_empty_classes=True,
        )  # fmt: skip
    assert splits.class_names == ["5", "6", "7"]
    labels = np.concatenate([y.numpy() for _, y in splits.train_images.dataset()])
    assert np.bincount(labels).tolist() == [6, 6, 7]  # 7's images keep label 2, not 3


def test_tiff_files_are_skipped_and_counted_by_every_reader(messy, tmp_path, fresh_keras):
    """TensorFlow does not decode TIFF: such files are never samples, but they are reported,
    by training and by evaluate alike, instead of vanishing in silence."""
    import warnings

    from PIL import Image

    import zoo_transfer
    from zoo_transfer import data
    from zoo_transfer.errors import DataWarning
    from zoo_transfer.evaluate import evaluate, image_folder

    Image.open(messy / "5" / "000.png").save(messy / "5" / "scan.tif")
    Image.open(messy / "6" / "000.png").save(messy / "6" / "scan.TIFF")
    listing = list_image_folder(messy)
    assert sorted(p.rsplit("/", 1)[1] for p in listing.unsupported) == ["scan.TIFF", "scan.tif"]
    assert not any(p.lower().endswith((".tif", ".tiff")) for p in listing.paths)
    with pytest.warns(DataWarning, match=r"Skipped 2 file.*TIFF.*scan"):
        splits = data.load(str(messy), image_size=32, validation_split=None, augment="none")
    assert splits.num_train == 19 and len(splits.skipped) == 2

    model = zoo_transfer.build("digitnet", 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(model, image_folder(messy), ["5", "6", "7"], image_size=(32, 32))
    assert result.num_samples == 19
    assert any("Skipped 2" in str(w.message) and "scan.tif" in str(w.message) for w in caught)

    only_tiff = tmp_path / "tiffs"
    for name in ("a", "b"):
        (only_tiff / name).mkdir(parents=True)
        Image.open(messy / "5" / "000.png").save(only_tiff / name / "x.tiff")
    with pytest.raises(DataError, match=r"format TensorFlow does not read.*'x.tiff'"):
        data.load(str(only_tiff), image_size=32, validation_split=None)


def test_typical_side_is_the_median_shorter_side_read_from_the_headers(tmp_path):
    from PIL import Image

    from zoo_transfer.folders import typical_side

    sizes = {"a": [(40, 30), (300, 200), (50, 60)], "b": [(1000, 24), (28, 28)]}
    for name, shapes in sizes.items():
        (tmp_path / name).mkdir()
        for i, (w, h) in enumerate(shapes):
            Image.new("RGB", (w, h)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png")  # skipped, not fatal
    # shorter sides 30, 200, 50, 24, 28 -> median 30
    assert typical_side(tmp_path) == 30
    assert typical_side(tmp_path, sample=2) in (24, 28, 30, 50, 200)
    empty = tmp_path / "empty"
    (empty / "c").mkdir(parents=True)
    assert typical_side(empty) is None
