"""TensorFlow-free image ops: `image_ops` function by function, with Pillow and Keras.

The data package reads files with these on every Keras backend but TensorFlow (JAX,
PyTorch, numpy), in a process that may not have TensorFlow at all. They follow
`tf.io.decode_image(channels=3, expand_animations=False)` rule by rule, so that a
folder gives the same images, the same skipped files and the same counts on either
backend:

- only JPEG, PNG, GIF, BMP and WebP files decode (by their first bytes, not their
  names), as RGB uint8: grayscale repeated to three channels, alpha dropped, palettes
  looked up, 16-bit PNGs cut to their high byte, a GIF's first frame;
- TensorFlow's quirks are kept, since a model must see the same pixels on both:
  a GIF's transparent pixels are black and its first frame keeps the frame's own
  size (`tf.io.decode_gif`); an 8-bit BMP's palette indices are read as grey levels,
  and BMPs of other depths than 8, 24 and 32 bits do not decode; a WebP with alpha or
  animation does not decode with three channels;
- JPEGs are decoded as TensorFlow's libjpeg decodes them, to the same pixels (see
  `_decode_jpeg`): its fast integer IDCT, its chroma upsampling, and, for a JPEG much
  larger than `at_least`, its 1/2, 1/4 or 1/8 scale (`Image.draft`), to the same size.

Resizing is `keras.ops.image.resize` on the current backend, on the CPU as `image_ops`
does it; its results differ from TensorFlow's by float rounding (JAX: up to 1 grey
level once rounded, on a fraction of a percent of the pixels). JAX compiles the resize
once per image shape (about 0.1 s on a CPU core), which dominates the first pass over a
folder of photos of many sizes.

Every function imports Pillow and Keras when it runs, so importing this module does not.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.errors import ArgumentError, ImageFileError
from zoo_transfer.input_spec import InputSpec

_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")  # what tf.io.decode_image reads
_JPEG_MAGIC = b"\xff\xd8\xff"  # how `image_ops._decode_file` tells a JPEG
_BMP_DEPTHS = (8, 24, 32)  # TensorFlow: 1, 3 or 4 bytes a pixel
_WEBP_ALPHA_OR_ANIMATION = 0x12  # VP8X flags that `decode_webp(channels=3)` refuses


class _Refused(ValueError):
    """A file Pillow reads but TensorFlow does not; `_decode` names the file."""


def _decode_file(path: str | os.PathLike, at_least: int | None = None) -> np.ndarray:
    """Decode an image file as RGB uint8 `(H, W, 3)`, as `image_ops._decode_file` does.

    With `at_least`, a JPEG whose shorter side is 2, 4 or 8 times `at_least` or more is
    decoded at 1/2, 1/4 or 1/8 scale by libjpeg. Raises `ImageFileError` for a file that
    TensorFlow would not decode.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageFileError(f"Cannot read image {os.fspath(path)!r}: {exc}.") from None
    return _decode(data, at_least, os.fspath(path))


def _decode(data: bytes, at_least: int | None, name: str) -> np.ndarray:
    """`_decode_file` of the bytes of file `name` (which only names it in errors)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
            if data[:3] == _JPEG_MAGIC:
                return _decode_jpeg(image, data, at_least)
            return _to_rgb(image, data)
    except Image.UnidentifiedImageError:
        why = "unknown format"
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ... alike
        why = str(exc) if isinstance(exc, _Refused) else f"{type(exc).__name__}: {exc}"
    raise ImageFileError(
        f"Cannot decode {name!r} as an image ({why}). Expected a JPEG, PNG, BMP, GIF or WebP file."
    )


def _decode_jpeg(image: Any, data: bytes, at_least: int | None) -> np.ndarray:
    """A JPEG decoded as TensorFlow's `decode_jpeg` decodes it, to the same pixels.

    The scale: with `at_least`, 1/2, 1/4 or 1/8 when the shorter side is 2, 4 or 8 times
    `at_least` or more, to `ceil(side / ratio)` pixels (libjpeg's DCT scaling). The IDCT:
    TensorFlow's libjpeg runs the fast integer one, and Pillow only with its draft flag,
    which also turns libjpeg's fancy chroma upsampling off. So with the flag Pillow gives
    TensorFlow's pixels where no colour plane is upsampled (grayscale, 4:4:4, 4:2:0 at 1/2
    scale or less); where one is (4:2:0 at full size), it decodes YCbCr with the flag and
    the planes are upsampled and converted to RGB here, as libjpeg does it.
    """
    width, height = image.size
    ratio = 1
    for r in (2, 4, 8):
        if at_least is not None and min(width, height) >= at_least * r:
            ratio = r
    # Pillow picks the largest power of 2 <= min(width // w, height // h): exactly
    # `ratio` for these sizes (both sides are at least `ratio`).
    size = (width // ratio, height // ratio) if ratio > 1 else None
    steps = _upsampling([(h, v) for _, h, v, _ in image.layer], ratio)
    fancy = ratio < 8 and any(step != (1, 1) for step in steps)  # libjpeg: not at 1/8
    if not fancy and _fast_draft(image, None, size):
        return _to_rgb(image, data)
    if image.mode == "RGB" and steps[0] == (1, 1) and len(steps) == 3:
        try:
            ycc = np.asarray(image) if _fast_draft(image, "YCbCr", size) else None
        except Exception:  # e.g. a JPEG stored as RGB, which libjpeg gives only as RGB
            ycc = None
        if ycc is not None:
            planes = [ycc[..., 0].astype(np.int32)]
            for index in (1, 2):
                step_x, step_y = steps[index]
                samples = ycc[::step_y, ::step_x, index].astype(np.int32)
                planes.append(
                    _fancy_upsample(samples, step_x, step_y)[: ycc.shape[0], : ycc.shape[1]]
                )
            return _ycc_to_rgb(*planes)
    from PIL import Image  # a rare layout: libjpeg's accurate IDCT, fancy upsampling

    with Image.open(io.BytesIO(data), formats=("JPEG",)) as again:
        again.draft(None, size)
        return _to_rgb(again, data)


def _fast_draft(image: Any, mode: str | None, size: tuple[int, int] | None) -> bool:
    """Pillow's `draft` to `mode` and `size`, with its flag (libjpeg's fast integer IDCT,
    no fancy upsampling); False where Pillow cannot draft this JPEG."""
    image.draft(mode, size)
    if not image.decoderconfig or (mode is not None and image.mode != mode):
        return False
    image.decoderconfig = (image.decoderconfig[0], 1)
    return True


def _upsampling(factors: list[tuple[int, int]], ratio: int) -> list[tuple[int, int]]:
    """How many times libjpeg(-turbo) upsamples each plane of a JPEG with these sampling
    factors, decoded at 1/`ratio`, across and down: a plane's IDCT grows from the scaled
    size while that keeps it no larger than the image (jdmaster.c); the rest is
    upsampling."""
    most_h, most_v = max(h for h, _ in factors), max(v for _, v in factors)
    scaled = 8 // ratio
    steps = []
    for h, v in factors:
        size = scaled
        while (
            size < 8
            and (most_h * scaled) % (h * size * 2) == 0
            and (most_v * scaled) % (v * size * 2) == 0
        ):
            size *= 2
        steps.append((most_h * scaled // (h * size), most_v * scaled // (v * size)))
    return steps


def _fancy_upsample(samples: np.ndarray, step_x: int, step_y: int) -> np.ndarray:
    """libjpeg-turbo's fancy upsampling (jdsample.c) of a chroma plane: triangle
    filtering, 2x across, down or both, edges repeated; other steps, and planes of two
    columns or fewer, are repeated samples, as libjpeg does them."""
    fancy = (step_x, step_y) in ((2, 1), (1, 2), (2, 2)) and (
        samples.shape[1] > 2 or (step_x, step_y) == (1, 2)
    )
    if not fancy:
        return np.repeat(np.repeat(samples, step_y, axis=0), step_x, axis=1)
    if step_y == 2:  # near row * 3 + far row: above for even output rows, below for odd
        above = np.concatenate([samples[:1], samples[:-1]])
        below = np.concatenate([samples[1:], samples[-1:]])
        rows = np.empty((2 * samples.shape[0], samples.shape[1]), np.int32)
        rows[0::2], rows[1::2] = samples * 3 + above, samples * 3 + below
        if step_x == 1:
            out = rows.copy()
            out[0::2], out[1::2] = (rows[0::2] + 1) >> 2, (rows[1::2] + 2) >> 2
            return out
        this, shift, bias = rows, 4, (8, 7)
    else:
        this, shift, bias = samples, 2, (1, 2)
    left = np.concatenate([this[:, :1], this[:, :-1]], axis=1)
    right = np.concatenate([this[:, 1:], this[:, -1:]], axis=1)
    out = np.empty((this.shape[0], 2 * this.shape[1]), np.int32)
    out[:, 0::2] = (this * 3 + left + bias[0]) >> shift
    out[:, 1::2] = (this * 3 + right + bias[1]) >> shift
    return out


def _ycc_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """libjpeg's YCbCr to RGB (jdcolor.c): 16-bit fixed point, clamped to 0-255."""
    fix = lambda x: int(x * 65536 + 0.5)  # noqa: E731
    cb, cr = cb - 128, cr - 128
    red = y + ((fix(1.40200) * cr + 32768) >> 16)
    green = y + ((-fix(0.34414) * cb + 32768 - fix(0.71414) * cr) >> 16)
    blue = y + ((fix(1.77200) * cb + 32768) >> 16)
    return np.clip(np.stack([red, green, blue], axis=-1), 0, 255).astype(np.uint8)


def _to_rgb(image: Any, data: bytes) -> np.ndarray:
    """The decoded `image` (opened from `data`) as TensorFlow's RGB uint8 pixels."""
    kind = image.format
    if kind == "BMP":
        return _bmp(image, data)
    if kind == "WEBP" and (
        "A" in image.mode
        or (data[12:16] == b"VP8X" and len(data) > 20 and data[20] & _WEBP_ALPHA_OR_ANIMATION)
    ):
        raise _Refused("a WebP with alpha or animation (TensorFlow reads neither)")
    if kind == "GIF":
        return _gif_first_frame(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale PNG
        grey = (np.asarray(image).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"))


def _bmp(image: Any, data: bytes) -> np.ndarray:
    depth = int.from_bytes(data[28:30], "little")
    if depth not in _BMP_DEPTHS:
        raise _Refused(f"a {depth}-bit BMP (TensorFlow reads 8, 24 and 32 bits)")
    offset = int.from_bytes(data[10:14], "little")
    width, height = image.size
    row = (depth * width + 31) // 32 * 4
    if offset + row * height > len(data):  # e.g. run-length encoded
        raise _Refused("a BMP shorter than its rows (compressed or truncated)")
    if depth == 8:  # TensorFlow reads the palette indices as grey levels
        image.load()
        indices = np.asarray(image if image.mode in ("L", "P") else image.convert("L"))
        return np.repeat(indices[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"))


def _gif_first_frame(image: Any) -> np.ndarray:
    """A GIF's first frame as `tf.io.decode_gif` gives it: transparent pixels black, and
    the frame's own size, with the frame at its offset in it."""
    left, top, right, bottom = image.tile[0][1] if image.tile else (0, 0, *image.size)
    transparent = image.info.get("transparency")
    image.load()
    rgb = np.array(image.convert("RGB"))
    if transparent is not None and image.mode in ("P", "L"):
        rgb[np.asarray(image) == transparent] = 0
    height, width = bottom - top, right - left
    if (left, top, width, height) == (0, 0, *image.size):
        return rgb
    out = np.zeros((height, width, 3), np.uint8)
    kept = rgb[top:height, left:width]
    out[top : top + kept.shape[0], left : left + kept.shape[1]] = kept
    return out


def _check_interpolation(method: str) -> None:
    """Refuse an interpolation that `keras.ops.image.resize` lacks on this backend."""
    import keras

    if method == "area" and keras.backend.backend() != "tensorflow":
        raise ArgumentError(
            f"interpolation='area' needs the TensorFlow backend; Keras' resize on "
            f"{keras.backend.backend()} has no area method. Received: "
            f"KERAS_BACKEND={keras.backend.backend()!r}. Use 'bilinear' (or antialias=True "
            "for a filtered downsize), or KERAS_BACKEND=tensorflow."
        )


def _resize(image: np.ndarray, side: int, method: str = "bilinear", antialias: bool = False):
    """`image` (float, one image or a batch) as `side` x `side`, float32; unchanged if it
    already is. `keras.ops.image.resize` on the current backend."""
    import keras

    if tuple(image.shape[-3:-1]) == (side, side):
        return np.asarray(image, dtype="float32")
    resized = keras.ops.image.resize(
        image.astype("float32", copy=False),
        (side, side),
        interpolation=method,
        antialias=antialias,
    )
    return keras.ops.convert_to_numpy(resized).astype("float32", copy=False)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0.0, 255.0).astype(np.uint8)


def read_image(path: str | os.PathLike, spec: InputSpec | int) -> np.ndarray:
    """`image_ops.read_image` without TensorFlow: float32 `(side, side, 3)` RGB 0-255.

    Raises `ImageFileError` for a file that does not decode.
    """
    spec = spec if isinstance(spec, InputSpec) else InputSpec(side=int(spec))
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageFileError(f"Cannot read image {os.fspath(path)!r}: {exc}.") from None
    return _load_image(data, os.fspath(path), spec.side, spec.side, spec)


def _load_image(
    data: bytes, name: str, height: int, width: int, spec: InputSpec | None = None
) -> np.ndarray:
    """The image in `data` (file `name`) as `image_ops.load_image` reads it, float32 RGB
    0-255 in whole grey levels: with a `spec` of that size as training stores it (a large
    JPEG decoded at a fraction of its size, the spec's resize), else decoded whole and
    resized bilinearly to `(height, width)`."""
    import keras

    if spec is not None and (height, width) == spec.image_size:
        _check_interpolation(spec.interpolation)
        image = _decode(data, spec.side, name).astype("float32")
        with _cpu():
            resized = _resize(image, spec.side, spec.interpolation, spec.antialias)
    else:
        image = _decode(data, None, name).astype("float32")
        with _cpu():
            resized = keras.ops.image.resize(image, (height, width), interpolation="bilinear")
            resized = keras.ops.convert_to_numpy(resized)
    return _to_uint8(resized).astype("float32")


def _first_pass(
    paths: Sequence[str], side: int | None, spec: InputSpec | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """`image_ops._first_pass` without TensorFlow: decode every file once in a thread pool;
    which ones are images, and (with `side`) the images resized to `side` x `side` (by
    `spec`'s method) as one numpy uint8 array, in file order."""
    method, antialias = ("bilinear", False)  # the default resize, as `image_ops._method`
    if spec is not None:
        method, antialias = spec.interpolation, spec.antialias
    if side is not None:
        _check_interpolation(method)
    ok = np.zeros(len(paths), dtype=bool)
    store = None if side is None else np.empty((len(paths), side, side, 3), np.uint8)

    def decode(index: int) -> None:
        try:
            image = _decode_file(paths[index], at_least=side)
        except ImageFileError:
            return
        if store is not None:
            store[index] = _to_uint8(_resize(image.astype("float32"), side, method, antialias))
        ok[index] = True

    _in_threads(decode, len(paths))
    if store is None:
        return ok, None
    kept = np.flatnonzero(ok)
    for row, index in enumerate(kept):  # close the gaps of the files that failed
        if row != index:
            store[row] = store[index]
    return ok, store[: len(kept)]


def _read_batch(
    paths: Sequence[str], side: int, method: str = "bilinear", antialias: bool = False
) -> np.ndarray:
    """Files decoded whole and resized to `side` x `side`, float32 `(N, side, side, 3)`:
    the streamed pipeline's images (`cache=False`), which are not rounded."""
    out = np.empty((len(paths), side, side, 3), np.float32)

    def decode(index: int) -> None:
        out[index] = _resize(_decode_file(paths[index]).astype("float32"), side, method, antialias)

    _in_threads(decode, len(paths))
    return out


def _in_threads(work: Callable[[int], None], count: int) -> None:
    """`work(i)` for every `i < count` in a thread pool (Pillow decodes without the GIL),
    each with Keras on the CPU; the first exception is raised here."""
    if count == 0:
        return
    workers = min(count, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 4)

    def run(index: int) -> None:
        with _cpu():
            work(index)

    if workers <= 1:
        for index in range(count):
            run(index)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(run, range(count)):
            pass


def _cpu() -> Any:
    """Keras ops on the CPU, as `image_ops` resizes in a `/CPU:0` scope: one image's resize
    is too small a job for an accelerator, and JAX would compile it there per shape."""
    import keras

    return keras.device("cpu:0")
