"""`num_classes=None` keeps the ImageNet classifier: real weights, raw 0-255 images in."""

from __future__ import annotations

import numpy as np

import zoo_transfer


def _raw_eval_images(folder, size=224, short=256):
    """Resize the shorter side to 256, centre-crop 224: raw RGB 0-255, no normalisation."""
    import tensorflow as tf

    out = []
    files = sorted(folder.glob("*.JPEG"))
    for f in files:
        img = tf.io.decode_jpeg(tf.io.read_file(str(f)), channels=3)
        h, w = int(img.shape[0]), int(img.shape[1])
        nh, nw = max(size, round(h * short / min(h, w))), max(size, round(w * short / min(h, w)))
        img = tf.image.resize(img, (nh, nw), antialias=True)
        top, left = (nh - size) // 2, (nw - size) // 2
        out.append(img[top : top + size, left : left + size].numpy())
    return np.stack(out), np.arange(len(files)) * 10


def test_pretrained_classifier_on_raw_images(fresh_keras, shared_data):
    weights = shared_data / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"
    model = zoo_transfer.build("mobilenet.a025_224", num_classes=None, weights=str(weights))
    assert model.output_shape == (None, 1000)
    x, labels = _raw_eval_images(shared_data / "imagenet-sample")
    probs = model.predict(x.astype("uint8"), batch_size=25, verbose=0)
    top5 = np.argsort(-probs, axis=1)[:, :5]
    hits = sum(label in row for label, row in zip(labels, top5, strict=True))
    assert hits >= 75, f"{hits}/100 top-5 hits from raw images"
