"""`zoo_transfer.data.load`: sources, splits, corrupt files, augmentation, determinism."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo_transfer.errors import DataError, DataWarning, ZooTransferError


def _write_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """`counts[class]` random JPEG/PNG images of mixed sizes (16-40 px) per class."""
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            shape = (int(rng.integers(16, 41)), int(rng.integers(16, 41)), 3)
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            ext = "png" if i % 3 == 0 else "jpg"
            Image.fromarray(pixels).save(root / name / f"{i:02d}.{ext}")
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return _write_folder(tmp_path / "flowers", {"tulip": 6, "daisy": 5, "rose": 7})


def _collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def _quiet_load(*args, **kwargs):
    from zoo_transfer.data import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load(*args, **kwargs)


# ---------------------------------------------------------------------------------------
# Sources


def test_folder_splits_classes_and_batches(folder):
    from zoo_transfer.data import Splits, load

    splits = load(folder, image_size=24, batch_size=4, validation_split=0.25, augment="none")
    assert isinstance(splits, Splits)
    train, val, class_names = splits
    assert class_names == ["daisy", "rose", "tulip"]  # sorted folder names = indices
    assert (splits.num_train, splits.num_val) == (14, 4)  # round(18 * 0.25) = 4
    assert splits.skipped == [] and splits.label_mode == "int"
    assert str(folder) in splits.source
    batches = [(x.numpy(), y.numpy()) for x, y in train]
    assert len(batches) == 3  # 14 images: the partial training batch is dropped
    for x, y in batches:
        assert x.shape == (4, 24, 24, 3) and x.dtype == np.float32
        assert x.min() >= 0 and x.max() <= 255 and x.max() > 1  # raw 0-255, not scaled
        assert y.dtype == np.int64 and set(y) <= {0, 1, 2}
    x_val, y_val = _collect(val)
    assert x_val.shape == (4, 24, 24, 3)  # every validation image
    # stratified: a quarter of 5, 7, 6 is 1.25, 1.75, 1.5; the largest remainder rounds up
    assert np.bincount(y_val, minlength=3).tolist() == [1, 2, 1]
    assert splits.train_images.size.numpy() == 24 and splits.val_images.batch_size == 4

    alone = load(folder, image_size=24, batch_size=4, augment="none")
    assert alone.val is None and alone.val_images is None
    assert (alone.num_train, alone.num_val) == (18, 0)


@pytest.mark.parametrize("cache", [True, False])
def test_images_are_the_decoded_files(folder, cache):
    import tensorflow as tf

    splits = _quiet_load(
        folder, image_size=20, batch_size=64, validation_split=0.5, augment="none", cache=cache
    )
    x_val, y_val = _collect(splits.val)
    # the validation split is unshuffled and in file order within each class
    files = sorted(folder.glob("*/*"))
    expected = {}
    for path in files:
        decoded = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(decoded, tf.float32), (20, 20)).numpy()
        expected.setdefault(path.parent.name, []).append(image)
    for image, label in zip(x_val, y_val, strict=True):
        candidates = expected[splits.class_names[label]]
        error = min(np.abs(image - c).max() for c in candidates)
        # cached images are stored as uint8: at most half a grey level from the float resize
        assert error <= (0.5 + 1e-3 if cache else 1e-3)


def test_separate_validation_folder(tmp_path):
    from zoo_transfer.data import load

    train_dir = _write_folder(tmp_path / "train", {"a": 4, "b": 4})
    val_dir = _write_folder(tmp_path / "val", {"a": 2, "b": 3}, seed=1)
    splits = load(train_dir, image_size=16, batch_size=4, validation=val_dir)
    assert (splits.num_train, splits.num_val) == (8, 5)
    assert np.bincount(_collect(splits.val)[1]).tolist() == [2, 3]

    odd = _write_folder(tmp_path / "odd", {"a": 2, "c": 2})
    with pytest.raises(DataError, match=r"\['a', 'c'\].*\['a', 'b'\]"):
        load(train_dir, image_size=16, validation=odd)


def test_grayscale_and_rgba_files_become_rgb(tmp_path):
    from zoo_transfer.data import load

    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgba = np.dstack([np.full((16, 16), v, np.uint8) for v in (10, 100, 200, 0)])
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    Image.fromarray(gray, mode="L").save(tmp_path / "a" / "gray.png")
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "b" / "rgba.png")
    splits = load(tmp_path, image_size=16, batch_size=2, augment="none", validation=tmp_path)
    x, y = _collect(splits.val)
    assert x.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(x[0], np.repeat(gray[..., None], 3, -1).astype("float32"))
    np.testing.assert_array_equal(x[1], rgba[..., :3].astype("float32"))  # alpha dropped
    assert y.tolist() == [0, 1]


def test_numpy_source_grayscale_and_split():
    from zoo_transfer.data import load

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 12, 12), dtype=np.uint8)  # (N, H, W): grayscale
    y = np.arange(20) % 2
    splits = load((x, y), image_size=12, batch_size=5, validation_split=0.2, augment="none")
    assert splits.class_names == ["0", "1"] and (splits.num_train, splits.num_val) == (16, 4)
    x_train, y_train = _collect(splits.train)
    x_val, y_val = _collect(splits.val)
    assert x_train.shape == (15, 12, 12, 3)  # 16 images, batches of 5: one dropped
    both = np.concatenate([x_train, x_val])
    assert np.all(both[..., 0] == both[..., 2])
    # every image is one of the inputs, exactly, with its own label
    for image, label in zip(both, np.concatenate([y_train, y_val]), strict=True):
        index = np.flatnonzero((x == image[..., 0]).all(axis=(1, 2)))
        assert len(index) == 1 and y[index[0]] == label


@pytest.mark.parametrize("cache", [True, False])
def test_tf_data_source_rgba_and_mixed_sizes(cache):
    import tensorflow as tf

    from zoo_transfer.data import load

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (10 + i, 14, 4), dtype=np.uint8) for i in range(12)]
    ds = tf.data.Dataset.from_generator(
        lambda: ((im, i % 3) for i, im in enumerate(images)),
        output_signature=(
            tf.TensorSpec((None, None, 4), tf.uint8),
            tf.TensorSpec((), tf.int64),
        ),
    )
    splits = load(ds, image_size=8, batch_size=3, validation_split=0.25, cache=cache)
    assert splits.class_names == ["0", "1", "2"]
    assert (splits.num_train, splits.num_val) == (9, 3)
    assert splits.train_images._source.cardinality() == 9  # known, for ProgressiveResizing
    x_train, _ = _collect(splits.train)
    x_val, y_val = _collect(splits.val)
    assert x_train.shape == (9, 8, 8, 3) and x_val.shape == (3, 8, 8, 3)
    assert sorted(y_val) == [0, 1, 2]

    with pytest.raises(DataError, match=r"unbatch"):
        load(ds.batch(2), image_size=8)


# ---------------------------------------------------------------------------------------
# Corrupt files


@pytest.mark.parametrize("cache", [True, False])
def test_corrupt_files_are_skipped_and_fit_runs_the_epoch(tmp_path, cache, fresh_keras):
    from zoo_transfer.data import load

    keras = fresh_keras
    root = _write_folder(tmp_path, {"cat": 5, "dog": 6})
    good = (root / "cat" / "01.jpg").read_bytes()
    (root / "cat" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "dog" / "notes.jpg").write_text("not an image")
    (root / "dog" / "readme.txt").write_text("ignored: not an image extension")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load(root, image_size=32, batch_size=4, cache=cache)
    data_warnings = [w for w in caught if issubclass(w.category, DataWarning)]
    assert len(data_warnings) == 1
    message = str(data_warnings[0].message)
    assert "Skipped 2 file(s)" in message and "truncated.jpg" in message
    assert sorted(Path(p).name for p in splits.skipped) == ["notes.jpg", "truncated.jpg"]
    assert splits.num_train == 11

    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    steps = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: steps.append(b))
    history = model.fit(splits.train, epochs=2, verbose=0, callbacks=[counter])
    assert len(history.history["loss"]) == 2
    assert steps == [0, 1] * 2  # 11 images in batches of 4: two full batches per epoch


# ---------------------------------------------------------------------------------------
# Bad input


def test_bad_sources_raise_data_error(tmp_path):
    from zoo_transfer.data import load

    with pytest.raises(DataError, match=r"not found: '.*missing'") as err:
        load(tmp_path / "missing", image_size=16)
    assert isinstance(err.value, ZooTransferError)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"Empty image folder: '.*empty'.*one subfolder per"):
        load(empty, image_size=16)

    single = _write_folder(tmp_path / "single", {"only": 3})
    with pytest.raises(DataError, match=r"single class folder \('only'\).*at least 2"):
        load(single, image_size=16)

    no_images = tmp_path / "no_images"
    for name in ("a", "b"):
        (no_images / name).mkdir(parents=True)
        (no_images / name / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"no image files.*\.jpg"):
        load(no_images, image_size=16)

    all_bad = tmp_path / "all_bad"
    for name in ("a", "b"):
        (all_bad / name).mkdir(parents=True)
        (all_bad / name / "fake.png").write_text("x")
    with pytest.raises(DataError, match=r"no readable images \(2 file"):
        _quiet_load(all_bad, image_size=16)

    with pytest.raises(DataError, match=r"Received: 42"):
        load(42, image_size=16)
    with pytest.raises(DataError, match=r"1 class\(es\)"):
        load((np.zeros((4, 8, 8, 3)), np.zeros(4, int)), image_size=8)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"validation_split": 0}, r"between 0 and 1.*validation_split=0\b"),
        ({"validation_split": 1.5}, r"validation_split=1.5"),
        ({"validation_split": True}, r"validation_split=True"),
        ({"validation_split": 0.01}, r"validation_split=0.01 of 18 images leaves 18 .* 0"),
        ({"validation_split": 0.2, "validation": "x"}, r"either `validation_split` or"),
        ({"augment": "extreme"}, r"none, light, medium, heavy.*augment='extreme'"),
        ({"image_size": 0}, r"image_size=0"),
        ({"storage_size": 8}, r"storage_size` >= `image_size` \(16\).*storage_size=8"),
    ],
)
def test_bad_arguments_raise_data_error(folder, kwargs, pattern):
    from zoo_transfer.data import load

    kwargs = {"image_size": 16, **kwargs}
    with pytest.raises(DataError, match=pattern):
        load(folder, **kwargs)


# ---------------------------------------------------------------------------------------
# TensorFlow Datasets


def test_tfds_not_prepared_fails_fast_and_says_how(tmp_path, monkeypatch):
    import tensorflow_datasets  # noqa: F401  (import time is not what is measured)

    from zoo_transfer.data import load

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    calls = []

    def no_network(self, address):  # "fast" = it never tries the network
        calls.append(address)
        raise OSError("the network is not for this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(DataError) as err:
        load("tfds:tf_flowers", image_size=16)
    assert calls == []
    message = str(err.value)
    assert str(tmp_path) in message and "tfds build tf_flowers" in message
    assert "download_and_prepare" in message
    assert not any(tmp_path.rglob("*.tfrecord*"))  # nothing was downloaded

    with pytest.raises(
        DataError, match=r"Unknown TensorFlow Datasets name 'tf_flowerz'.*tf_flowers"
    ):
        load("tfds:tf_flowerz", image_size=16)
    assert calls == []


def test_a_tensorflow_datasets_that_does_not_import_is_explained(monkeypatch):
    """Measured with TensorFlow 2.16-2.19: tensorflow-metadata 1.21 needs a newer protobuf."""
    import importlib.abc

    from zoo_transfer.data import load

    class Broken(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow_datasets":
                raise ImportError("cannot import name 'runtime_version' from 'google.protobuf'")
            return None

    monkeypatch.delitem(sys.modules, "tensorflow_datasets", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    with pytest.raises(
        DataError, match=r"fails to import.*runtime_version.*tensorflow-metadata<1.21"
    ):
        load("tfds:tf_flowers", image_size=16)


def _tiny_tfds_builder():
    import tensorflow_datasets as tfds

    class ZooTransferTinyShapes(tfds.core.GeneratorBasedBuilder):
        """12 images of mixed sizes, labels alternating 'dark', 'light'."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=["dark", "light"]),
                }
            )
            return tfds.core.DatasetInfo(
                builder=self, features=features, supervised_keys=("image", "label")
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(12)}

        def _generate_examples(self, count):
            rng = np.random.default_rng(0)
            for i in range(count):
                image = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
                yield i, {"image": image, "label": i % 2}

    return ZooTransferTinyShapes


def test_tfds_prepared_dataset_loads(tmp_path, monkeypatch):
    from zoo_transfer.data import load

    _tiny_tfds_builder()(data_dir=str(tmp_path)).download_and_prepare()
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    splits = load(
        "tfds:zoo_transfer_tiny_shapes", image_size=16, batch_size=4, validation_split=0.25
    )
    assert splits.class_names == ["dark", "light"]
    assert (splits.num_train, splits.num_val) == (9, 3)
    assert splits.source.startswith("tfds:zoo_transfer_tiny_shapes:train")
    assert next(iter(splits.train))[0].shape == (4, 16, 16, 3)

    sliced = load(
        "tfds:zoo_transfer_tiny_shapes:train[:50%]",
        image_size=16,
        batch_size=4,
        validation="tfds:zoo_transfer_tiny_shapes:train[50%:]",
        cache=False,
    )
    assert (sliced.num_train, sliced.num_val) == (6, 6)
    with pytest.raises(DataError, match=r"no split 'test'.*\['train'\]"):
        load("tfds:zoo_transfer_tiny_shapes:test", image_size=16)


# ---------------------------------------------------------------------------------------
# Augmentation and determinism


def _arrays(n=16, side=16, classes=2):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n, side, side, 3)).astype("float32")
    return x, np.arange(n) % classes


def test_none_keeps_images_and_light_changes_some():
    from zoo_transfer.data import load

    x, y = _arrays()
    plain = load((x, y), image_size=16, batch_size=16, augment="none", seed=3)
    x_plain, y_plain = _collect(plain.train)
    # the un-augmented pipeline returns exactly the inputs (shuffled)
    order = [int(np.flatnonzero((x == image).all(axis=(1, 2, 3)))[0]) for image in x_plain]
    assert sorted(order) == list(range(16))
    np.testing.assert_array_equal(y_plain, y[order])

    light = load((x, y), image_size=16, batch_size=16, augment="light", seed=3)
    x_light, y_light = _collect(light.train)
    np.testing.assert_array_equal(y_light, y_plain)  # same shuffle, labels untouched
    changed = np.abs(x_light - x_plain).max(axis=(1, 2, 3)) > 1
    assert 0 < changed.sum()
    assert x_light.min() >= 0 and x_light.max() <= 255
    assert y_light.dtype == np.int64

    medium = load((x, y), image_size=16, batch_size=16, augment="medium", seed=3)
    x_medium, _ = _collect(medium.train)
    assert x_medium.min() >= 0 and x_medium.max() <= 255
    assert (np.abs(x_medium - x_plain).max(axis=(1, 2, 3)) > 1).sum() > changed.sum() // 2
    # validation is never augmented
    val = load((x, y), image_size=16, batch_size=16, augment="medium", validation=(x, y))
    np.testing.assert_array_equal(_collect(val.val)[0], x)


def test_heavy_gives_soft_one_hot_labels():
    from zoo_transfer.data import load

    x, y = _arrays(n=32, classes=4)
    splits = load((x, y), image_size=16, batch_size=8, augment="heavy", validation=(x, y))
    assert splits.label_mode == "categorical"
    _, labels = _collect(splits.train)
    assert labels.shape == (32, 4) and labels.dtype == np.float32
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)
    assert labels.min() >= 0
    assert np.any((labels > 0.01) & (labels < 0.99))  # mixed, not hard one-hot
    _, val_labels = _collect(splits.val)
    np.testing.assert_array_equal(val_labels, np.eye(4, dtype="float32")[y])


def test_augmentation_layers_are_keras_core_layers():
    import keras

    from zoo_transfer.data import augmentation_layers

    assert augmentation_layers("none") == []
    light = augmentation_layers("light", seed=5)
    assert [type(layer).__name__ for layer in light] == [
        "RandomFlip",
        "RandomTranslation",
        "RandomZoom",
    ]
    assert [layer.seed for layer in light] == [5, 6, 7]
    heavy = augmentation_layers("heavy")
    assert len(heavy) == 6 and isinstance(heavy[-1], keras.layers.MixUp)
    assert all(type(layer).__module__.startswith("keras.") for layer in heavy)
    with pytest.raises(DataError, match="augment='strong'"):
        augmentation_layers("strong")


def test_same_seed_same_batches(folder):
    def batches(seed):
        splits = _quiet_load(
            folder, image_size=16, batch_size=4, validation_split=0.2, augment="light", seed=seed
        )
        first = [(x.numpy(), y.numpy()) for x, y in splits.train]
        second = [(x.numpy(), y.numpy()) for x, y in splits.train]
        return first, second, _collect(splits.val)

    a_first, a_second, a_val = batches(0)
    b_first, b_second, b_val = batches(0)
    for (xa, ya), (xb, yb) in zip(a_first + a_second, b_first + b_second, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(a_val[0], b_val[0])
    # a new epoch reshuffles and draws new augmentations
    assert any(not np.array_equal(p[0], q[0]) for p, q in zip(a_first, a_second, strict=True))
    # another seed: another split and order
    c_first, _, c_val = batches(1)
    assert not np.array_equal(c_val[0], a_val[0]) or not all(
        np.array_equal(p[1], q[1]) for p, q in zip(a_first, c_first, strict=True)
    )


@pytest.mark.parametrize("source", ["cache", "stream", "arrays"])
def test_an_epoch_draws_its_batches_from_the_seed_and_its_number_alone(folder, source):
    """What a resumed run needs: epoch e's order and augmentation depend on (seed, e) only,
    not on how many passes this process made before."""
    if source == "arrays":
        rng = np.random.default_rng(0)
        data = (rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8), np.arange(20) % 3)
    else:
        data = folder
    splits = _quiet_load(
        data, image_size=16, batch_size=4, augment="light", seed=3, cache=source != "stream"
    )

    def epoch():
        return [(x.numpy(), y.numpy()) for x, y in splits.train]

    passes = [epoch() for _ in range(3)]  # unpinned: each pass is the next epoch
    splits.train_images.set_epoch(2)
    third = epoch()
    splits.train_images.set_epoch(1)
    second = epoch()
    after = epoch()  # goes on to epoch 2
    for a, b in [(passes[2], third), (passes[1], second), (passes[2], after)]:
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    orders = {tuple(np.concatenate([y for _, y in p])) for p in passes}
    assert len(orders) > 1  # epochs are reshuffled
    assert not np.array_equal(passes[0][0][0], passes[1][0][0])


def test_epoch_seeding_pins_the_epoch_keras_runs(folder, fresh_keras):
    from zoo_transfer.callbacks import EpochSeeding

    splits = _quiet_load(folder, image_size=16, batch_size=4, augment="light", seed=0)
    seen = []

    class Record(fresh_keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(int(splits.train_images.epoch.numpy()))

    model = fresh_keras.Sequential(
        [fresh_keras.Input((16, 16, 3)), fresh_keras.layers.Flatten(), fresh_keras.layers.Dense(3)]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(
        splits.train, epochs=5, initial_epoch=3, verbose=0,
        callbacks=[EpochSeeding(splits.train_images), Record()],
    )  # fmt: skip
    assert seen == [3, 4]
    with pytest.raises(ZooTransferError, match="ResizableImages or ResizableArrays"):
        EpochSeeding(splits.train)


def test_size_changes_between_epochs_from_the_store(folder):
    from zoo_transfer.data import load

    splits = load(folder, image_size=16, storage_size=32, batch_size=4, augment="none")
    assert next(iter(splits.train))[0].shape == (4, 16, 16, 3)
    splits.train_images.set_size(32)
    assert next(iter(splits.train))[0].shape == (4, 32, 32, 3)
    assert splits.train_images._store.shape[1:] == (32, 32, 3)  # decoded once, at 32 px


def test_importing_data_does_not_import_tensorflow():
    code = "import sys, zoo_transfer.data; print('tensorflow' in sys.modules)"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_large_jpegs_are_decoded_at_reduced_scale(tmp_path):
    import tensorflow as tf

    from zoo_transfer.data import _decode_file, load

    yy, xx = np.mgrid[0:200, 0:240]
    smooth = np.dstack([yy, xx, (yy + xx) // 2]).astype(np.uint8)  # gradients: JPEG-friendly
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(smooth).save(tmp_path / name / "big.jpg", quality=95)
    path = str(tmp_path / "a" / "big.jpg")
    # shorter side 200 >= 8 * 24: libjpeg decodes at 1/8 scale, 25 x 30
    assert _decode_file(tf.constant(path), at_least=24).shape == (25, 30, 3)
    assert _decode_file(tf.constant(path), at_least=60).shape == (100, 120, 3)  # 1/2
    assert _decode_file(tf.constant(path), at_least=101).shape == (200, 240, 3)  # full
    splits = load(tmp_path, image_size=24, batch_size=2, augment="none", validation=tmp_path)
    x, _ = _collect(splits.val)
    reference = tf.image.resize(smooth.astype("float32"), (24, 24), antialias=True).numpy()
    assert x.shape == (2, 24, 24, 3)
    assert np.abs(x[0] - reference).mean() < 3  # grey levels: same picture, smaller


def test_progressive_resizing_with_loaded_splits(folder, fresh_keras):
    from zoo_transfer.callbacks import ProgressiveResizing
    from zoo_transfer.data import load

    keras = fresh_keras
    splits = load(
        folder, image_size=16, storage_size=24, batch_size=4, validation_split=0.25, seed=0
    )
    model = keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Conv2D(2, 3),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    sizes = []
    probe = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: sizes.append(next(iter(splits.train))[0].shape[1])
    )
    resizing = ProgressiveResizing(
        {0: 16, 1: 24}, splits.train_images, splits.val_images, verbose=0
    )
    history = model.fit(
        splits.train, validation_data=splits.val, epochs=2, verbose=0, callbacks=[resizing, probe]
    )
    assert history.history["image_size"] == [16, 24]
    assert history.history["val_image_size"] == [24, 24]
    assert sizes == [16, 24]


def test_cache_too_big_for_memory_streams_instead(folder, monkeypatch):
    from zoo_transfer import data

    # `_fits_in_memory` (zoo_transfer.data.parts) looks the free memory up there
    monkeypatch.setattr("zoo_transfer.data.parts._available_memory", lambda: 10_000)  # bytes
    with pytest.warns(DataWarning, match=r"Caching 18 images of 16x16 .*streaming from disk"):
        splits = data.load(folder, image_size=16, batch_size=6, augment="none")
    assert splits.train_images._store is None  # files are decoded every epoch
    x, y = _collect(splits.train)
    assert x.shape == (18, 16, 16, 3) and len(y) == 18
