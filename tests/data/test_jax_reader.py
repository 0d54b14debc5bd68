"""The TensorFlow-free reader: `pil_ops` decodes as TensorFlow does, and `load` on JAX.

Two halves. In this (TensorFlow-backend) process, `zoo_transfer.data.pil_ops` and the
TensorFlow ops of `image_ops` read the same files: every format, corrupt files, large
JPEGs at reduced scale, and the shared real photos. Measured: the decoded pixels are
equal, JPEGs included (Pillow is set up to run libjpeg as TensorFlow does), and so are
`read_image`'s outputs here, where both resize with TensorFlow.

In a subprocess with KERAS_BACKEND=jax and TensorFlow unimportable, `load` reads a
folder (and numpy arrays, and the shared fashion-mnist-small folder) into
`ResizableArrays`; its classes, counts, skipped files, split, batch shapes and images are
compared here with what the tf.data path makes of the same sources. The images differ
by JAX's resize alone: measured, batches at most 3e-5 grey levels apart, and
`read_image` (rounded to whole levels) at most 1 level, on 0.01-0.4% of the pixels of
the ImageNet sample photos.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from no_tensorflow import no_tensorflow_env
from PIL import Image

from zoo_transfer.errors import DataWarning, ImageFileError
from zoo_transfer.input_spec import InputSpec

ROOT = Path(__file__).resolve().parents[2]
# One xdist worker for the module: its JAX subprocess (`jax_run`) then runs once.
pytestmark = pytest.mark.xdist_group("data/test_jax_reader")


def _shared(name: str) -> Path | None:
    """A folder of the shared real data (`$ZOO_TRANSFER_TEST_DATA`, else ../shared/data)."""
    env = os.environ.get("ZOO_TRANSFER_TEST_DATA")
    path = (Path(env) if env else ROOT.parent / "shared" / "data") / name
    return path if path.is_dir() else None


def _skip_without(name: str) -> Path:
    path = _shared(name)
    if path is None:
        pytest.skip(
            f"shared real data {name!r} not found: set ZOO_TRANSFER_TEST_DATA to the folder "
            "holding it (see shared/data/README.md)"
        )
    return path


def _tf_decode(path: Path, at_least: int | None = None) -> np.ndarray:
    import tensorflow as tf

    from zoo_transfer.data import _decode_file

    return _decode_file(tf.constant(str(path)), at_least=at_least).numpy()


def _pil_decode(path: Path, at_least: int | None = None) -> np.ndarray:
    from zoo_transfer.data import pil_ops

    return pil_ops._decode_file(path, at_least=at_least)


# ---------------------------------------------------------------------------------------
# Files of every kind


def _gif_at_offset(frame: np.ndarray, left: int, top: int, transparent: int | None) -> bytes:
    """A GIF whose first frame is smaller than its 10x8 screen, at (left, top); LZW
    written as 9-bit literals with a Clear code every 254 (valid, uncompressed)."""
    codes, run = [256], 0
    for pixel in frame.ravel():
        if run == 254:
            codes, run = [*codes, 256], 0
        codes.append(int(pixel))
        run += 1
    codes.append(257)
    bits = width = 0
    packed = bytearray()
    for code in codes:
        bits |= code << width
        width += 9
        while width >= 8:
            packed.append(bits & 255)
            bits, width = bits >> 8, width - 8
    if width:
        packed.append(bits & 255)
    blocks = bytearray([8])
    for i in range(0, len(packed), 255):
        blocks += bytes([len(packed[i : i + 255])]) + packed[i : i + 255]
    palette = np.random.default_rng(5).integers(0, 256, 768, dtype=np.uint8).tobytes()
    data = b"GIF89a" + struct.pack("<HHBBB", 10, 8, 0xF7, 7, 0) + palette
    if transparent is not None:
        data += bytes([0x21, 0xF9, 4, 1, 0, 0, transparent, 0])
    height, wide = frame.shape
    data += b"," + struct.pack("<HHHHB", left, top, wide, height, 0) + bytes(blocks) + b"\x00;"
    return data


def _write_formats(root: Path) -> dict[str, Path]:
    """One file of every format and mode the readers must agree on."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:61, 0:83]
    smooth = np.dstack([yy * 4, xx * 3, (yy + xx) * 2]).astype(np.uint8)
    photo = (smooth.astype(int) + rng.integers(-25, 25, smooth.shape)).clip(0, 255)
    photo = photo.astype(np.uint8)
    alpha = rng.integers(0, 256, (33, 47, 1), dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    made = {
        "rgb.png": Image.fromarray(noise),
        "gray.png": Image.fromarray(noise[..., 0]),
        "gray_alpha.png": Image.fromarray(np.dstack([noise[..., 0], alpha[..., 0]]), "LA"),
        "rgba.png": Image.fromarray(np.dstack([noise, alpha])),
        "palette.png": Image.fromarray(noise).quantize(64),
        "gray16.png": Image.fromarray(noise[..., 0].astype(np.uint16) * 257 + 100),
        "rgb.bmp": Image.fromarray(noise),
        "rgba.bmp": Image.fromarray(np.dstack([noise, alpha])),
        "palette.bmp": Image.fromarray(noise).quantize(16),
        "lossless.webp": Image.fromarray(noise),
        "lossy.webp": Image.fromarray(smooth),
        "small.jpg": Image.fromarray(photo),
        "small_444.jpg": Image.fromarray(photo),
        "small_422.jpg": Image.fromarray(photo),
        "progressive.jpg": Image.fromarray(photo),
        "gray.jpg": Image.fromarray(photo[..., 1]),
        "cmyk.jpg": Image.fromarray(photo).convert("CMYK"),
    }
    options = {
        "palette.png": {"transparency": 3},
        "lossless.webp": {"lossless": True},
        "lossy.webp": {"quality": 80},
        "small.jpg": {"quality": 90},
        "small_444.jpg": {"quality": 90, "subsampling": "4:4:4"},
        "small_422.jpg": {"quality": 90, "subsampling": "4:2:2"},
        "progressive.jpg": {"quality": 90, "progressive": True},
    }
    paths = {}
    for name, image in made.items():
        paths[name] = root / name
        image.save(paths[name], **options.get(name, {}))
    frames = [Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)) for _ in range(3)]
    frames = [f.quantize(32) for f in frames]
    paths["animated.gif"] = root / "animated.gif"
    frames[0].save(paths["animated.gif"], save_all=True, append_images=frames[1:], duration=50)
    paths["transparent.gif"] = root / "transparent.gif"
    Image.fromarray(noise).quantize(16).save(paths["transparent.gif"], transparency=0)
    frame = rng.integers(0, 256, (4, 5), dtype=np.uint8)
    for name, transparent in (("offset.gif", None), ("offset_transparent.gif", int(frame[0, 0]))):
        paths[name] = root / name
        paths[name].write_bytes(_gif_at_offset(frame, 2, 1, transparent))
    return paths


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, Path]:
    return _write_formats(tmp_path_factory.mktemp("formats"))


FORMATS = [
    "rgb.png",
    "gray.png",
    "gray_alpha.png",
    "rgba.png",
    "palette.png",
    "gray16.png",
    "animated.gif",
    "transparent.gif",
    "offset.gif",
    "offset_transparent.gif",
    "rgb.bmp",
    "rgba.bmp",
    "palette.bmp",
    "lossless.webp",
    "lossy.webp",
    "small.jpg",
    "small_444.jpg",
    "small_422.jpg",
    "progressive.jpg",
    "gray.jpg",
    "cmyk.jpg",
]


@pytest.mark.parametrize("name", FORMATS)
def test_pillow_decodes_every_format_as_tensorflow_does(formats, name):
    """Equal pixels, JPEGs included (measured: max abs difference 0): Pillow runs libjpeg
    with TensorFlow's fast IDCT, and 4:2:0 chroma is upsampled as libjpeg does it. The
    GIF and BMP quirks of TensorFlow are kept (black transparent pixels, the first
    frame's own size, an 8-bit BMP's indices as grey levels)."""
    expected = _tf_decode(formats[name])
    decoded = _pil_decode(formats[name])
    assert decoded.dtype == np.uint8 and decoded.shape == expected.shape
    np.testing.assert_array_equal(decoded, expected)


def test_the_quirks_are_tensorflows(formats):
    offset = _pil_decode(formats["offset.gif"])
    assert offset.shape == (4, 5, 3)  # the frame's size, not the 10x8 screen
    assert (offset[0] == 0).all() and (offset[:, :2] == 0).all()  # the offset stays black
    indices = np.asarray(Image.open(formats["palette.bmp"]))
    np.testing.assert_array_equal(_pil_decode(formats["palette.bmp"])[..., 1], indices)


def test_large_jpegs_are_decoded_at_tensorflows_reduced_scale(tmp_path):
    yy, xx = np.mgrid[0:437, 0:611]
    big = np.dstack([(yy // 2) % 256, (xx * 2) % 256, (yy + xx) % 256]).astype(np.uint8)
    paths = []
    for sampling in ("4:2:0", "4:4:4", "4:2:2"):
        paths.append(tmp_path / f"big_{sampling.replace(':', '')}.jpg")
        Image.fromarray(big).save(paths[-1], quality=92, subsampling=sampling)
    for path in paths:
        # shorter side 437: 1/8 from at_least 54 down, 1/4 to 109, 1/2 to 218
        for at_least, shape in [(24, (55, 77)), (100, (110, 153)), (200, (219, 306))]:
            decoded = _pil_decode(path, at_least)
            assert decoded.shape == (*shape, 3)
            np.testing.assert_array_equal(decoded, _tf_decode(path, at_least))
        assert _pil_decode(path, 219).shape == (437, 611, 3)  # 437 < 2 * 219: full size


@pytest.mark.parametrize("sampling", ["4:2:0", "4:4:4"])
def test_reduced_sizes_are_ceil_of_the_side_over_the_ratio(tmp_path, sampling):
    """`Image.draft` gives `decode_jpeg(ratio=r)`'s size, ceil(side / r), for any sides."""
    rng = np.random.default_rng(1)
    for height, width in [(16, 16), (17, 31), (33, 65), (63, 47), (64, 129), (97, 41)]:
        path = tmp_path / f"{height}x{width}.jpg"
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, quality=90, subsampling=sampling)
        for at_least in (1, 2, 3, 5, 8, 16):
            ratio = max([1] + [r for r in (2, 4, 8) if min(height, width) >= at_least * r])
            decoded = _pil_decode(path, at_least)
            assert decoded.shape == (-(-height // ratio), -(-width // ratio), 3)
            np.testing.assert_array_equal(decoded, _tf_decode(path, at_least))


def _write_broken(root: Path) -> list[Path]:
    """Files that TensorFlow does not decode, for reasons of every kind."""
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    good = io.BytesIO()
    Image.fromarray(noise).save(good, "JPEG")
    png = io.BytesIO()
    Image.fromarray(noise).save(png, "PNG")
    broken = {
        "truncated.jpg": good.getvalue()[: len(good.getvalue()) // 2],
        "truncated.png": png.getvalue()[: len(png.getvalue()) // 2],
        "notes.jpg": b"not an image",
        "empty.png": b"",
    }
    for name, data in broken.items():
        (root / name).write_bytes(data)
    Image.fromarray(noise).save(root / "tiff_named.jpg", format="TIFF")
    Image.fromarray(noise[..., 0] > 128).save(root / "one_bit.bmp")
    Image.fromarray(np.dstack([noise, noise[..., :1]])).save(root / "alpha.webp", lossless=True)
    frames = [Image.fromarray(noise), Image.fromarray(255 - noise)]
    frames[0].save(root / "animated.webp", save_all=True, append_images=frames[1:])
    return sorted(p for p in root.iterdir())


def test_files_tensorflow_cannot_decode_fail_in_pillow_too(tmp_path):
    import tensorflow as tf

    for path in _write_broken(tmp_path):
        with pytest.raises(tf.errors.InvalidArgumentError):
            _tf_decode(path)
        with pytest.raises(ImageFileError, match=rf"Cannot decode '.*{path.name}' as an image"):
            _pil_decode(path)


def test_first_pass_keeps_and_skips_the_same_files(formats, tmp_path):
    from zoo_transfer.data import image_ops, pil_ops

    paths = [str(p) for p in [*formats.values(), *_write_broken(tmp_path / "broken")]]
    paths.sort()
    for side, spec in [(None, None), (20, InputSpec(20)), (24, InputSpec(24, antialias=True))]:
        ok_tf, store_tf = image_ops._first_pass(paths, side, spec)
        ok_pil, store_pil = pil_ops._first_pass(paths, side, spec)
        assert ok_pil.tolist() == ok_tf.tolist()
        assert ok_pil.sum() == len(formats)
        if side is None:
            assert store_pil is None
        else:
            assert store_pil.dtype == np.uint8 and store_pil.shape == (len(formats), side, side, 3)
            np.testing.assert_array_equal(store_pil, store_tf.numpy())


def test_load_image_reads_alike_and_names_a_bad_file(formats, tmp_path):
    from zoo_transfer.data import load_image, pil_ops

    for name in ("small.jpg", "palette.png", "transparent.gif"):
        data = formats[name].read_bytes()
        spec = InputSpec(20, antialias=True)
        np.testing.assert_array_equal(
            pil_ops._load_image(data, name, 20, 20, spec),
            load_image(formats[name], input_spec=spec),
        )
        np.testing.assert_array_equal(  # a non-square size: decoded whole, bilinear
            pil_ops._load_image(data, name, 12, 30), load_image(formats[name], (12, 30))
        )
    with pytest.raises(ImageFileError, match=r"Cannot decode 'bad.jpg' as an image"):
        pil_ops._load_image(b"not an image", "bad.jpg", 20, 20)
    with pytest.raises(ImageFileError, match=r"Cannot read image .*missing.png"):
        pil_ops.read_image(tmp_path / "missing.png", 20)


# ---------------------------------------------------------------------------------------
# Real photos and drawings (the shared data)


def test_real_photos_decode_and_read_alike():
    """The 100 ImageNet sample JPEGs (4:4:4 and 4:2:0 photos): decoded, and read at the
    training sizes (which decode most at reduced scale), equal to TensorFlow's."""
    from zoo_transfer.data import image_ops, pil_ops

    photos = sorted(_skip_without("imagenet-sample").glob("*.JPEG"))
    assert len(photos) == 100
    for path in photos:
        np.testing.assert_array_equal(_pil_decode(path), _tf_decode(path))
    for spec in (InputSpec(64), InputSpec(160, antialias=True), InputSpec(224, "bicubic")):
        for path in photos[::3]:
            np.testing.assert_array_equal(
                pil_ops.read_image(path, spec), image_ops.read_image(path, spec)
            )


def test_real_grayscale_pngs_decode_alike():
    drawings = sorted(_skip_without("fashion-mnist-small").glob("*/*/*.png"))[::20]
    assert len(drawings) >= 50
    for path in drawings:
        np.testing.assert_array_equal(_pil_decode(path), _tf_decode(path))


# ---------------------------------------------------------------------------------------
# ResizableArrays, grown for `load` (any backend)


def test_resizable_arrays_in_order_one_hot_and_files(tmp_path):
    from zoo_transfer.data import ResizableArrays, augmentation_layers

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 12, 12, 3), dtype=np.uint8)
    y = np.arange(10) % 3
    arrays = ResizableArrays(x, y, size=12, batch_size=4, num_classes=3, seed=1)
    assert arrays.num_images == 10 and len(arrays) == 2
    images, labels = arrays.batch(0)
    assert images.dtype == np.float32 and labels.shape == (4, 3) and labels.dtype == np.float32
    once = arrays.in_order()
    assert len(once) == 3 and once.num_images == 10  # the partial batch kept
    ordered = np.concatenate([once.batch(i)[0] for i in range(len(once))])
    np.testing.assert_array_equal(ordered, x.astype("float32"))
    once.next_epoch()
    assert arrays.epoch == 0  # the copy never moves the epoch of the original

    layered = ResizableArrays(
        x, y, size=12, batch_size=4, seed=1, augmentation=augmentation_layers("light", seed=1)
    )
    layered.set_epoch(4)
    first = layered.batch(1)
    layered.batch(0)  # the layers' generators moved on
    np.testing.assert_array_equal(layered.batch(1)[0], first[0])  # reseeded per batch
    np.testing.assert_array_equal(layered.in_order().batch(0)[0], x[:4].astype("float32"))

    for i in range(4):
        Image.fromarray(x[i]).save(tmp_path / f"{i}.png")
    files = ResizableArrays.from_files(
        sorted(tmp_path.glob("*.png")), y[:4], size=12, batch_size=2, shuffle=False
    )
    np.testing.assert_array_equal(files.batch(1)[0], x[2:4].astype("float32"))
    files.set_size(6)
    assert files.batch(0)[0].shape == (2, 6, 6, 3)


# ---------------------------------------------------------------------------------------
# `load` on JAX, without TensorFlow, against the tf.data path

JAX_PROGRAM = r"""
import json, sys, warnings

cfg = json.loads(sys.argv[1])


# TensorFlow is blocked by the environment (conftest.no_tensorflow_env)

import keras
import numpy as np

from zoo_transfer import data
from zoo_transfer.data import load, load_image, read_image
from zoo_transfer.errors import ArgumentError, DataError, DataWarning, ImageFileError
from zoo_transfer.input_spec import InputSpec

out, arrays = {"backend": keras.backend.backend()}, {}


def describe(key, splits):
    x, y = splits.train[0]
    out[key] = {
        "class_names": splits.class_names,
        "num_train": splits.num_train,
        "num_val": splits.num_val,
        "skipped": sorted(s.rsplit("/", 1)[-1] for s in splits.skipped),
        "label_mode": splits.label_mode,
        "batches": [len(splits.train), len(splits.val)],
        "train_batch": [list(x.shape), str(x.dtype), list(y.shape), str(y.dtype)],
        "types": [type(splits.train).__name__, type(splits.train_images).__name__],
    }
    val = [splits.val[i] for i in range(len(splits.val))]
    arrays[key + "_val_x"] = np.concatenate([b[0] for b in val])
    arrays[key + "_val_y"] = np.concatenate([b[1] for b in val])
    once = splits.train_images.in_order()
    train = [once.batch(i) for i in range(len(once))]
    arrays[key + "_train_x"] = np.concatenate([b[0] for b in train])
    arrays[key + "_train_y"] = np.concatenate([b[1] for b in train])


def quiet_load(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load(*args, **kwargs)
    return splits, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


folder = cfg["folder"]
common = dict(image_size=24, batch_size=4, validation_split=0.25, seed=3)
splits, out["warnings"] = quiet_load(folder, storage_size=32, augment="none", **common)
describe("cached", splits)
splits.train_images.set_size(32)
out["resized"] = list(splits.train[0][0].shape)
splits.train_images.set_size(24)

keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input((None, None, 3)),
    keras.layers.Rescaling(1 / 255),
    keras.layers.Conv2D(4, 3),
    keras.layers.GlobalAveragePooling2D(),
    keras.layers.Dense(len(splits.class_names), activation="softmax"),
])
model.compile("adam", "sparse_categorical_crossentropy")
history = model.fit(splits.train, validation_data=splits.val, epochs=1, verbose=0)
out["fit"] = {k: [float(v) for v in vs] for k, vs in history.history.items()}

describe("streamed", quiet_load(folder, augment="none", cache=False, **common)[0])

rng = np.random.default_rng(0)
x = rng.integers(0, 256, (20, 12, 12), dtype=np.uint8)
describe("numpy", load((x, np.arange(20) % 2), image_size=10, batch_size=5,
                       validation_split=0.2, augment="none", seed=1))

light = quiet_load(folder, augment="light", **common)[0].train_images
plain = quiet_load(folder, augment="none", **common)[0].train_images
light.set_epoch(2)
plain.set_epoch(2)
first, again = light.batch(0), light.batch(0)
light.set_epoch(3)
other = light.batch(0)
light.set_epoch(2)
redrawn = light.batch(0)
out["augment"] = {
    "same": all(np.array_equal(first[0], b[0]) for b in (again, redrawn)),
    "same_labels_as_plain": bool(np.array_equal(first[1], plain.batch(0)[1])),
    "changed": bool(np.abs(first[0] - plain.batch(0)[0]).max() > 1),
    "other_epoch_differs": bool(not np.array_equal(first[0], other[0])),
    "range": [float(first[0].min()), float(first[0].max())],
    "labels": str(first[1].dtype),
}
heavy = quiet_load(folder, augment="heavy", **common)[0]
images, labels = heavy.train[0]
out["heavy"] = {
    "label_mode": heavy.label_mode,
    "labels": [list(labels.shape), str(labels.dtype)],
    "sums": [float(s) for s in labels.sum(axis=1)],
    "soft": bool(np.any((labels > 0.01) & (labels < 0.99))),
    "val_labels": [list(heavy.val[0][1].shape), str(heavy.val[0][1].dtype)],
    "range": [float(images.min()), float(images.max())],
}

if cfg["fashion"]:
    describe("fashion", load(cfg["fashion"], image_size=32, batch_size=64,
                             validation_split=0.2, augment="none", seed=0))

errors = {}


class FakeDataset:  # what a tf.data.Dataset looks like to `load`, TensorFlow blocked
    pass


FakeDataset.__module__ = "tensorflow.python.data.ops.dataset_ops"
for name, source in (("tfds", "tfds:mnist"), ("dataset", FakeDataset())):
    try:
        load(source, image_size=16)
    except DataError as err:
        errors[name] = str(err)
try:
    read_image(cfg["files"][0], InputSpec(20, "area"))
except ArgumentError as err:
    errors["area"] = str(err)
try:
    load_image(cfg["bad"], input_spec=InputSpec(20))
except ImageFileError as err:
    errors["bad_file"] = str(err)
out["errors"] = errors
arrays["read"] = np.stack([read_image(f, InputSpec(20, antialias=True)) for f in cfg["files"]])
arrays["loaded"] = np.stack([load_image(f, (12, 30)) for f in cfg["files"]])

data.parts._available_memory = lambda: 10_000  # bytes: the store cannot be cached
small, out["memory_warnings"] = quiet_load(folder, image_size=16, batch_size=4, augment="none")
out["memory_batch"] = list(small.train[0][0].shape)

out["tensorflow_loaded"] = "tensorflow" in sys.modules
np.savez(cfg["arrays"], **arrays)
print("RESULT=" + json.dumps(out))
"""


def _write_folder(root: Path) -> Path:
    """Three classes of JPEG, PNG, GIF, BMP and WebP files of mixed sizes (a few: JAX
    compiles a resize per shape), and broken files."""
    rng = np.random.default_rng(0)
    shapes = [(20, 30, 3), (41, 24, 3), (33, 33, 3), (57, 45, 3)]
    for name, count in {"tulip": 6, "daisy": 5, "rose": 7}.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, shapes[int(rng.integers(4))], dtype=np.uint8)
            ext = ("png", "jpg", "gif", "bmp", "jpg", "webp")[i % 6]
            image = Image.fromarray(pixels)
            image.save(root / name / f"{i:02d}.{ext}", **({"quality": 90} if ext == "jpg" else {}))
    good = (root / "rose" / "01.jpg").read_bytes()
    (root / "rose" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "daisy" / "notes.jpg").write_text("not an image")
    (root / "daisy" / "readme.txt").write_text("ignored: not an image extension")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _write_folder(tmp_path_factory.mktemp("flowers") / "flowers")


@pytest.fixture(scope="module")
def jax_run(folder, formats, tmp_path_factory) -> tuple[dict, dict]:
    """`JAX_PROGRAM` run once: its JSON results and its arrays."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed in this environment")
    out = tmp_path_factory.mktemp("jax") / "arrays.npz"
    fashion = _shared("fashion-mnist-small")
    cfg = {
        "folder": str(folder),
        "fashion": str(fashion / "train") if fashion else None,
        "files": [str(formats[n]) for n in ("small.jpg", "palette.png", "transparent.gif")],
        "bad": str(folder / "daisy" / "notes.jpg"),
        "arrays": str(out),
    }
    env = no_tensorflow_env("jax")
    proc = subprocess.run(
        [sys.executable, "-c", JAX_PROGRAM, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT=")][-1]
    with np.load(out) as arrays:
        return json.loads(line[len("RESULT=") :]), dict(arrays)


def _tf_load(*args, **kwargs):
    from zoo_transfer.data import load

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load(*args, **kwargs)
    return splits, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def _collect(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def _compare(out: dict, arrays: dict, key: str, splits) -> None:
    """The JAX run's `key` side against the tf.data `splits` of the same source."""
    got = out[key]
    assert got["class_names"] == splits.class_names
    assert (got["num_train"], got["num_val"]) == (splits.num_train, splits.num_val)
    assert got["skipped"] == sorted(Path(s).name for s in splits.skipped)
    assert got["label_mode"] == splits.label_mode
    assert got["batches"] == [len(list(splits.train)), len(list(splits.val))]
    x, y = next(iter(splits.train))
    assert got["train_batch"] == [list(x.shape), "float32", list(y.shape), y.dtype.name]
    assert got["types"] == ["ArrayBatches", "ResizableArrays"]
    # The same split (which files went to validation), in the same order, labels equal.
    # The images differ by JAX's resize: by float rounding (measured: at most 3e-5 grey
    # levels), and by 1 where the two resizes round a stored pixel to different levels.
    for side, ds in (("val", splits.val), ("train", splits.train_images.in_order().dataset())):
        images, labels = _collect(ds)
        np.testing.assert_array_equal(arrays[f"{key}_{side}_y"], labels)
        difference = np.abs(arrays[f"{key}_{side}_x"] - images)
        assert difference.max() <= 1.0, (key, side, difference.max())
        assert (difference <= 1e-3).mean() >= 0.99, (key, side)


def test_jax_load_reads_a_folder_as_tensorflow_does(jax_run, folder):
    out, arrays = jax_run
    assert out["backend"] == "jax"
    splits, messages = _tf_load(
        folder, image_size=24, storage_size=32, batch_size=4, validation_split=0.25,
        augment="none", seed=3,
    )  # fmt: skip
    _compare(out, arrays, "cached", splits)
    assert out["cached"]["skipped"] == ["notes.jpg", "truncated.jpg"]
    assert out["warnings"] == messages  # the skipped-files DataWarning, word for word
    assert out["resized"] == [4, 32, 32, 3]  # set_size changes the batches


def test_jax_load_streams_files_with_cache_off(jax_run, folder):
    out, arrays = jax_run
    splits, _ = _tf_load(
        folder, image_size=24, batch_size=4, validation_split=0.25, augment="none", seed=3,
        cache=False,
    )  # fmt: skip
    _compare(out, arrays, "streamed", splits)


def test_jax_load_splits_numpy_arrays_as_tensorflow_does(jax_run):
    out, arrays = jax_run
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 12, 12), dtype=np.uint8)
    splits, _ = _tf_load(
        (x, np.arange(20) % 2), image_size=10, batch_size=5, validation_split=0.2,
        augment="none", seed=1,
    )  # fmt: skip
    _compare(out, arrays, "numpy", splits)


def test_jax_load_reads_the_shared_fashion_folder_as_tensorflow_does(jax_run):
    fashion = _skip_without("fashion-mnist-small") / "train"
    out, arrays = jax_run
    splits, _ = _tf_load(
        fashion, image_size=32, batch_size=64, validation_split=0.2, augment="none", seed=0
    )
    _compare(out, arrays, "fashion", splits)
    assert (out["fashion"]["num_train"], out["fashion"]["num_val"]) == (800, 200)


def test_jax_augmentation_is_drawn_from_seed_epoch_and_batch(jax_run):
    augment = jax_run[0]["augment"]
    assert augment["same"]  # same seed and epoch: the same batch, however often drawn
    assert augment["other_epoch_differs"]
    assert augment["changed"] and augment["same_labels_as_plain"]  # same order, new pixels
    assert 0.0 <= augment["range"][0] and augment["range"][1] <= 255.0
    assert augment["labels"] == "int64"
    heavy = jax_run[0]["heavy"]
    assert heavy["label_mode"] == "categorical"
    assert heavy["labels"] == [[4, 3], "float32"] and heavy["val_labels"][1] == "float32"
    np.testing.assert_allclose(heavy["sums"], 1.0, rtol=1e-5)
    assert heavy["soft"]  # MixUp mixed the one-hot labels


def test_jax_fit_runs_an_epoch_on_the_loaded_splits(jax_run):
    fit = jax_run[0]["fit"]
    assert set(fit) == {"loss", "val_loss"}
    assert all(np.isfinite(fit["loss"] + fit["val_loss"]))


def test_jax_load_never_imports_tensorflow(jax_run):
    out, _ = jax_run
    assert out["tensorflow_loaded"] is False


def test_jax_errors_name_the_fix(jax_run):
    errors = jax_run[0]["errors"]
    for name in ("tfds", "dataset"):
        assert "need the TensorFlow backend" in errors[name]
        assert "KERAS_BACKEND=tensorflow" in errors[name] and "numpy arrays" in errors[name]
    assert "'tfds:mnist'" in errors["tfds"] and "tf.data datasets" in errors["dataset"]
    assert "interpolation='area' needs the TensorFlow backend" in errors["area"]
    assert "Cannot decode" in errors["bad_file"] and "notes.jpg" in errors["bad_file"]
    out = jax_run[0]
    assert any("streaming from disk" in m for m in out["memory_warnings"])
    assert out["memory_batch"] == [4, 16, 16, 3]


def test_jax_read_image_is_within_a_grey_level_of_tensorflows(jax_run, formats):
    from zoo_transfer.data import load_image, read_image

    _, arrays = jax_run
    names = ("small.jpg", "palette.png", "transparent.gif")
    spec = InputSpec(20, antialias=True)
    expected = np.stack([read_image(formats[n], spec) for n in names])
    assert np.abs(arrays["read"] - expected).max() <= 1.0
    loaded = np.stack([load_image(formats[n], (12, 30)) for n in names])
    assert np.abs(arrays["loaded"] - loaded).max() <= 1.0
