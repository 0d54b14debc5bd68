"""Training and inference read image files the same way: `predict` on a saved, reloaded
model gives the predictions the training pipeline's validation path gives."""

from __future__ import annotations

import numpy as np
from PIL import Image


def _write(root, rng):
    """Three classes of images at sizes the model must resize: small PNGs, large PNGs (a
    4x downscale) and large JPEGs (decoded at a fraction of their size by libjpeg)."""
    for c, colour in enumerate(((200, 40, 40), (40, 200, 40), (40, 40, 200))):
        (root / str(c)).mkdir(parents=True)
        for i, (side, ext) in enumerate(((20, "png"), (128, "png"), (150, "jpg"), (64, "jpg"))):
            noise = rng.integers(-60, 60, (side, side, 3))
            pixels = np.clip(np.asarray(colour) + noise, 0, 255).astype("uint8")
            Image.fromarray(pixels).save(root / str(c) / f"{i}.{ext}")
    return root


def test_predict_on_the_files_equals_the_validation_pipeline(fresh_keras, tmp_path):
    import zoo_transfer
    from zoo_transfer import data
    from zoo_transfer.data import load_image
    from zoo_transfer.folders import list_image_folder
    from zoo_transfer.model_file import load_for_inference
    from zoo_transfer.predict import predict_files
    from zoo_transfer.saving import save_for_inference
    from zoo_transfer.training import fit_transfer

    rng = np.random.default_rng(0)
    train_dir, val_dir = _write(tmp_path / "train", rng), _write(tmp_path / "val", rng)
    splits = data.load(str(train_dir), image_size=32, validation=str(val_dir), augment="none")
    model = zoo_transfer.build("digitnet", 3)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    fit_transfer(model, splits, epochs=2, verbose=0)
    path = save_for_inference(model, tmp_path / "m.keras", class_names=["0", "1", "2"],
                              image_size=32)  # fmt: skip

    val_images = np.concatenate([np.asarray(x) for x, _ in splits.val])  # in file order
    files = list_image_folder(val_dir).paths
    for i, file in enumerate(files):  # the very same pixels
        np.testing.assert_array_equal(load_image(file, (32, 32)), val_images[i])

    net, names, size = load_for_inference(path)  # reloaded, as `zoo-transfer predict` does
    expected = model.predict(val_images, verbose=0)
    predicted = predict_files(net, files, class_names=names, image_size=size, top_k=3)
    for row, probs in zip(predicted, expected, strict=True):
        got = np.zeros(3)
        for _, index, p in row.top:
            got[index] = p
        np.testing.assert_allclose(got, probs, atol=1e-5)


def test_the_model_file_carries_how_training_resized(fresh_keras, tmp_path):
    """A spec other than the default (nearest, antialiased) reaches every step: the
    training pipeline, the saved file, and `predict` after a reload, with nothing passed
    by hand but the file."""
    import zoo_transfer
    from zoo_transfer import data
    from zoo_transfer.data import load_image
    from zoo_transfer.folders import list_image_folder
    from zoo_transfer.input_spec import InputSpec
    from zoo_transfer.model_file import load_for_inference
    from zoo_transfer.predict import predict_files
    from zoo_transfer.saving import save_for_inference

    rng = np.random.default_rng(1)
    train_dir, val_dir = _write(tmp_path / "train", rng), _write(tmp_path / "val", rng)
    spec = InputSpec(side=32, interpolation="nearest", antialias=True, crop_fraction=0.9)
    splits = data.load(str(train_dir), input_spec=spec, validation=str(val_dir), augment="none")
    val_images = np.concatenate([np.asarray(x) for x, _ in splits.val])
    files = list_image_folder(val_dir).paths
    plain = [load_image(f, (32, 32)) for f in files]  # the default resize
    assert any(not np.array_equal(p, v) for p, v in zip(plain, val_images, strict=True))

    model = zoo_transfer.build("digitnet", 3)
    path = save_for_inference(model, tmp_path / "m.keras", class_names=["0", "1", "2"],
                              input_spec=spec)  # fmt: skip
    loaded = load_for_inference(path)
    assert loaded.input_spec == spec
    for i, file in enumerate(files):
        np.testing.assert_array_equal(load_image(file, input_spec=loaded.input_spec), val_images[i])
    expected = model.predict(val_images, verbose=0)
    predicted = predict_files(
        loaded.model, files, class_names=loaded.class_names, input_spec=loaded.input_spec, top_k=3
    )
    got = np.zeros_like(expected)
    for i, row in enumerate(predicted):
        for _, index, p in row.top:
            got[i, index] = p
    np.testing.assert_allclose(got, expected, atol=1e-5)
