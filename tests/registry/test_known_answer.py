"""Known-answer check: real ImageNet weights + the card's normalisation => right answers.

Uses `shared/data/imagenet/mobilenet_v1_0.25_224.weights.h5` and the 100 images of
`shared/data/imagenet-sample/` (the i-th file in sorted order has class index 10*i).
Keras' own pipeline gets 84 top-5 hits; caffe-style normalisation by mistake gets ~10.
"""

from __future__ import annotations

import numpy as np
import pytest

from zoo_transfer.recipes import instantiate
from zoo_transfer.registry import get_card


def _eval_images(folder, card):
    """Resize the shorter side to size / crop_pct, centre-crop to the card's size."""
    import tensorflow as tf

    p = card.preprocessing
    h, w, _ = card.input_size
    short = round(h / p.crop_pct)
    files = sorted(folder.glob("*.JPEG"))
    out = []
    for f in files:
        img = tf.io.decode_jpeg(tf.io.read_file(str(f)), channels=3)
        ih, iw = int(img.shape[0]), int(img.shape[1])
        scale = short / min(ih, iw)
        nh, nw = max(h, round(ih * scale)), max(w, round(iw * scale))
        img = tf.image.resize(img, (nh, nw), method=p.interpolation, antialias=True)
        top, left = (nh - h) // 2, (nw - w) // 2
        out.append(img[top : top + h, left : left + w].numpy())
    return np.stack(out).astype("float32"), np.arange(len(files)) * 10


def _top5_hits(model, x, labels):
    probs = model.predict(x, batch_size=25, verbose=0)
    top5 = np.argsort(-probs, axis=1)[:, :5]
    return int(sum(label in row for label, row in zip(labels, top5, strict=True)))


@pytest.fixture(scope="module")
def mobilenet_025(shared_data):
    card = get_card("mobilenet.a025_224")
    model = instantiate(card, include_top=True, weights=None)
    model.load_weights(str(shared_data / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"))
    images, labels = _eval_images(shared_data / "imagenet-sample", card)
    assert len(labels) == 100
    return card, model, images, labels


def test_card_normalisation_gives_imagenet_answers(mobilenet_025):
    card, model, images, labels = mobilenet_025
    hits = _top5_hits(model, card.preprocessing.normalize(images), labels)
    assert hits >= 75, f"only {hits}/100 top-5 hits with the card's normalisation"


def test_wrong_normalisation_is_caught(mobilenet_025):
    """The same check fails with another card's (caffe) normalisation: it can fail."""
    _, model, images, labels = mobilenet_025
    caffe = get_card("resnet50").preprocessing
    hits = _top5_hits(model, caffe.normalize(images), labels)
    assert hits < 40, f"{hits}/100 hits with caffe normalisation: the check cannot tell"
