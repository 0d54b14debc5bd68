"""DigitNet: a tiny CNN pretrained on handwritten digits 0-4, shipped with the package.

It exists so that a whole transfer-learning run works on a machine with no network:
the backbone was pretrained on digits 0-4 by `scripts/pretrain_demo_backbone.py`, and
the transfer task is digits 5-9, which it never saw. The weights
(`zoo_transfer/assets/digitnet_digits04.weights.h5`) and the images
(`zoo_transfer/assets/digits.npz`) are package data, read with numpy and Keras only.

Data: the 1797 8x8 images of scikit-learn's `load_digits`, a copy of the test part of
the UCI "Optical Recognition of Handwritten Digits" data set (E. Alpaydin and
C. Kaynak, 1998; https://doi.org/10.24432/C50P49), licensed CC BY 4.0. Pixels are the
original ints 0-16.

The network is plain `keras.layers` (any backend). Like `keras.applications` it takes
inputs already normalised (the card's mode "tf": `x / 127.5 - 1`); `zoo_transfer.build`
adds that normalisation in front of it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.errors import BuildArgumentError

# As keras.applications do, the constructor names its weights file; the card records
# the same facts and the registry sweep checks that the two agree.
WEIGHTS_FILE = "digitnet_digits04.weights.h5"
WEIGHTS_URL = "package://zoo_transfer/assets/" + WEIGHTS_FILE
WEIGHTS_HASH = "1184385cfbe1526715c1e9022cff607ddc67f9e25f3f40519df5d832c7319dcf"
WEIGHTS_CACHE_SUBDIR = "assets"  # the package's own folder: Keras finds the file in place
DIGITS_FILE = "digits.npz"

NATIVE_SIZE = 32
MIN_SIZE = 16
STEM_WIDTH = 16
STAGE_WIDTHS = (16, 32, 64)
PRETRAIN_CLASSES = (0, 1, 2, 3, 4)
TRANSFER_CLASSES = (5, 6, 7, 8, 9)


# ------------------------------------------------------------------ the network
def _conv_bn_relu(x: Any, filters: int, stride: int, prefix: str, out_name: str) -> Any:
    from keras import layers

    x = layers.Conv2D(
        filters, 3, strides=stride, padding="same", use_bias=False, name=f"{prefix}_conv"
    )(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-3, name=f"{prefix}_bn")(x)
    return layers.ReLU(name=out_name)(x)


def _network(
    *,
    include_top: bool,
    input_shape: tuple,
    pooling: str | None,
    classes: int,
    classifier_activation: str | None,
    name: str,
) -> Any:
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="input_layer")
    x = _conv_bn_relu(inputs, STEM_WIDTH, 2, "stem", "stem_relu")
    for k, width in enumerate(STAGE_WIDTHS, start=1):
        x = _conv_bn_relu(x, width, 2, f"stage{k}_block1", f"stage{k}_block1_relu")
        x = _conv_bn_relu(x, width, 1, f"stage{k}_block2", f"stage{k}_out")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=name)


def _check_args(weights: Any, input_shape: Any, pooling: Any, include_top: bool, classes: int):
    if not (weights in (None, "imagenet", "digits04") or Path(str(weights)).is_file()):
        raise BuildArgumentError(
            "Expected `weights` to be None (random), 'imagenet' (the shipped weights, "
            "pretrained on digits 0-4; 'digits04' says the same) or the path of a "
            f"DigitNet .weights.h5 file. Received: weights={weights!r}"
        )
    if pooling not in (None, "avg", "max"):
        raise BuildArgumentError(
            f"Expected `pooling` to be None, 'avg' or 'max'. Received: pooling={pooling!r}"
        )
    if weights in ("imagenet", "digits04") and include_top and classes != len(PRETRAIN_CLASSES):
        raise BuildArgumentError(
            f"The pretrained DigitNet top has {len(PRETRAIN_CLASSES)} classes (digits 0-4). "
            f"Received: classes={classes!r}. Pass include_top=False for a new head, or "
            "weights=None."
        )
    shape = (NATIVE_SIZE, NATIVE_SIZE, 3) if input_shape is None else tuple(input_shape)
    if len(shape) != 3 or shape[2] != 3 or any(d is not None and d < MIN_SIZE for d in shape[:2]):
        raise BuildArgumentError(
            f"Expected `input_shape` as (height, width, 3) with height and width >= {MIN_SIZE} "
            f"or None. Received: input_shape={input_shape!r}"
        )
    return shape


def pretrained_weights_path() -> str:
    """The shipped DigitNet weights, requested the way `keras.applications` request theirs.

    The request goes through Keras' `get_file` (so zoo-transfer's registry probe records
    it against the card). The "cache" is the package's own
    `assets/` folder, where the file already is: Keras checks its sha256 and returns it
    in place. Nothing is copied to `~/.keras`, and there is no network.

    ```python
    path = pretrained_weights_path()   # '.../zoo_transfer/assets/digitnet_digits04.weights.h5'
    ```
    """
    # The module-level function keras.applications call (zoo-transfer's probe patches it).
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from keras.src.utils import file_utils

    from zoo_transfer.registry import resolve_package_url

    location = resolve_package_url(WEIGHTS_URL)
    package_root = Path(url2pathname(urlparse(location).path)).parent.parent
    return file_utils.get_file(
        WEIGHTS_FILE,
        location,
        file_hash=WEIGHTS_HASH,
        cache_subdir=WEIGHTS_CACHE_SUBDIR,
        cache_dir=str(package_root),
    )


def DigitNet(  # noqa: N802 - named like the keras.applications constructors
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_shape: tuple[int | None, int | None, int] | None = None,
    pooling: str | None = None,
    classes: int = 5,
    classifier_activation: str | None = "softmax",
    name: str = "digitnet",
) -> Any:
    """A small CNN (75,445 parameters) for 32x32 RGB digits, like `keras.applications`.

    Layers: `stem` (3x3 conv stride 2, BatchNorm, ReLU), three stages of two conv-BN-ReLU
    blocks (the first with stride 2; outputs `stage1_out`, `stage2_out`, `stage3_out`,
    at strides 4, 8, 16), then the top: `avg_pool` and `predictions`. Inputs are
    normalised to [-1, 1] (`x / 127.5 - 1`); the model does not normalise itself.

    Args:
        include_top: `bool`, keep the 5-class classifier of digits 0-4.
        weights: `None` (random), `"imagenet"` (the weights shipped with zoo-transfer,
            pretrained on digits 0-4; named so for `keras.applications` compatibility,
            `"digits04"` is a synonym) or the path of a full DigitNet `.weights.h5`.
        input_shape: `(H, W, 3)`, `H, W >= 16` or `None`; defaults to `(32, 32, 3)`.
        pooling: with `include_top=False`: `None` (the 4D stage-3 features), `"avg"` or
            `"max"`.
        classes: `int`, classifier width; 5 with the pretrained top.
        classifier_activation: activation of `predictions`; `None` for logits.
        name: `str`, the model's name.

    ```python
    model = DigitNet(include_top=False, weights=None)
    model.output.shape   # (None, 2, 2, 64)
    ```
    """
    shape = _check_args(weights, input_shape, pooling, include_top, classes)
    model = _network(
        include_top=include_top,
        input_shape=shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )
    if weights is None:
        return model
    path = pretrained_weights_path() if weights in ("imagenet", "digits04") else str(weights)
    if include_top:
        model.load_weights(path)
        return model
    # The file holds the full network: load it there, then copy layer by layer.
    full = _network(
        include_top=True,
        input_shape=shape,
        pooling=None,
        classes=len(PRETRAIN_CLASSES),
        classifier_activation=None,
        name=name,
    )
    full.load_weights(path)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(full.get_layer(layer.name).get_weights())
    return model


# ------------------------------------------------------------------ the data
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 shipped 8x8 digit images (uint8, 0-16) and their labels (0-9).

    ```python
    images, labels = load_digits()
    images.shape, images.max()   # ((1797, 8, 8), 16)
    ```
    """
    with resources.files("zoo_transfer").joinpath("assets", DIGITS_FILE).open("rb") as f:
        with np.load(f) as data:
            return data["images"].copy(), data["labels"].copy()


def _bilinear_matrix(size: int, source: int) -> np.ndarray:
    """(size, source) weights of bilinear resampling with half-pixel centres."""
    pos = np.clip((np.arange(size) + 0.5) * source / size - 0.5, 0, source - 1)
    low = np.floor(pos).astype(int)
    high = np.minimum(low + 1, source - 1)
    frac = pos - low
    w = np.zeros((size, source))
    w[np.arange(size), low] += 1 - frac
    w[np.arange(size), high] += frac
    return w


def digits_to_rgb(images: np.ndarray, size: int = NATIVE_SIZE) -> np.ndarray:
    """8x8 digits (0-16) -> `size` x `size` RGB uint8 0-255, bilinear, gray in 3 channels.

    Args:
        images: `(N, 8, 8)` array of ints 0-16, as `load_digits` gives.
        size: `int`, output height and width.

    ```python
    digits_to_rgb(load_digits()[0][:2]).shape   # (2, 32, 32, 3)
    ```
    """
    images = np.asarray(images, dtype=np.float64) * (255.0 / 16.0)
    rows = _bilinear_matrix(size, images.shape[1])
    cols = _bilinear_matrix(size, images.shape[2])
    up = np.einsum("hi,nij,wj->nhw", rows, images, cols)
    gray = np.clip(np.rint(up), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def digits_task(
    classes: tuple[int, ...],
    *,
    train_per_class: int | float,
    seed: int = 0,
    size: int = NATIVE_SIZE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """A train/test split of the digits of `classes`, relabelled 0..len(classes)-1.

    Args:
        classes: the digits to use, e.g. `(5, 6, 7, 8, 9)`.
        train_per_class: an `int` (that many training images per class) or a `float`
            in (0, 1) (that fraction of each class); the rest is the test set.
        seed: `int`; the split is a deterministic function of it.
        size: `int`, image height and width.

    Returns:
        `(x_train, y_train, x_test, y_test, class_names)`: RGB uint8 images 0-255 and
        int64 labels; `class_names` are the digits as strings.

    ```python
    x, y, xt, yt, names = digits_task((0, 1), train_per_class=0.8)
    ```
    """
    if not classes or any(int(c) not in range(10) for c in classes):
        raise BuildArgumentError(
            f"Expected `classes` to be digits 0-9. Received: classes={classes!r}"
        )
    images, labels = load_digits()
    rng = np.random.default_rng(seed)
    train_idx, test_idx, train_y, test_y = [], [], [], []
    for new, digit in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        if isinstance(train_per_class, float) and 0 < train_per_class < 1:
            n = int(round(train_per_class * len(idx)))
        elif isinstance(train_per_class, int) and 0 < train_per_class < len(idx):
            n = train_per_class
        else:
            raise BuildArgumentError(
                "Expected `train_per_class` to be an int in [1, "
                f"{len(idx) - 1}] or a fraction in (0, 1). "
                f"Received: train_per_class={train_per_class!r}"
            )
        train_idx.append(idx[:n])
        test_idx.append(idx[n:])
        train_y.append(np.full(n, new))
        test_y.append(np.full(len(idx) - n, new))
    tr, te = np.concatenate(train_idx), np.concatenate(test_idx)
    ytr, yte = np.concatenate(train_y), np.concatenate(test_y)
    order = rng.permutation(len(tr))  # mix the classes for training
    tr, ytr = tr[order], ytr[order]
    names = tuple(str(c) for c in classes)
    return (
        digits_to_rgb(images[tr], size),
        ytr.astype(np.int64),
        digits_to_rgb(images[te], size),
        yte.astype(np.int64),
        names,
    )


def demo_digits(
    seed: int = 0, train_per_class: int = 15, size: int = NATIVE_SIZE
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """The offline transfer task: digits 5-9 (never seen in pretraining), as 0-4.

    A small training set (`train_per_class` images of each digit) and a held-out test
    set (the other ~165 per digit), RGB uint8 0-255 at `size` x `size`.

    Args:
        seed: `int`; the split is a deterministic function of it.
        train_per_class: `int`, training images per digit.
        size: `int`, image height and width (the card's native size is 32).

    ```python
    x_train, y_train, x_test, y_test, class_names = demo_digits(seed=0)
    x_train.shape, class_names   # ((75, 32, 32, 3), ('5', '6', '7', '8', '9'))
    ```
    """
    return digits_task(TRANSFER_CLASSES, train_per_class=train_per_class, seed=seed, size=size)
