"""Every guard leaves a plain Keras model: saved, then loaded by a process that never
imports zoo_transfer, it predicts what the model in memory predicts."""

from __future__ import annotations

import numpy as np

import zoo_transfer
from zoo_transfer.guards import adapt_batchnorm, wise_ft
from zoo_transfer.saving import save_for_inference


def test_each_guard_leaves_a_model_that_plain_keras_loads(
    keras_session, digits, tmp_path, plain_keras_predictions
):
    x, y, x_val, _ = digits
    models = {}

    trained = zoo_transfer.build("digitnet", 5, trainable_from="stage2")
    optimizer = zoo_transfer.transfer_optimizer(trained, "adam", learning_rate=1e-2, l2_sp=1.0)
    trained.compile(optimizer, "sparse_categorical_crossentropy")
    trained.fit(x, y, batch_size=8, epochs=1, verbose=0)
    models["l2_sp"] = trained  # compiled with the L2-SP optimizer: saved for inference
    save_for_inference(trained, tmp_path / "l2_sp.keras")

    reference = zoo_transfer.build("digitnet", 5)
    mixed = zoo_transfer.build("digitnet", 5)
    mixed.set_weights([w + 0.01 for w in trained.get_weights()])
    models["wise_ft"] = wise_ft(mixed, 0.4, reference=reference)
    mixed.save(tmp_path / "wise_ft.keras")

    adapted = zoo_transfer.build("digitnet", 5)
    adapt_batchnorm(adapted, 255.0 - x)
    models["adabn"] = adapted
    adapted.save(tmp_path / "adabn.keras")

    paths = [tmp_path / f"{name}.keras" for name in models]
    for name, plain in zip(
        models, plain_keras_predictions(paths, x_val[:6], tmp_path), strict=True
    ):
        np.testing.assert_allclose(
            plain, models[name].predict(x_val[:6], verbose=0), atol=1e-5, err_msg=name
        )
