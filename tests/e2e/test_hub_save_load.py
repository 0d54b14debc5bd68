"""A model built on keras-hub presets, trained, saved and loaded in plain Keras.

The loading process imports neither zoo_transfer nor anything but Keras (keras-hub's
classes deserialise through Keras, which imports keras-hub itself), in safe mode.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import zoo_transfer

pytest.importorskip("keras_hub", reason="keras-hub (the hub extra) is not installed")

LOAD = """
import json, sys
import numpy as np
import keras
out = {}
for name in sys.argv[1].split(","):
    model = keras.saving.load_model(name + ".keras")  # safe mode
    out[name] = model.predict(np.load(name + ".npy"), verbose=0).tolist()
out["imported zoo_transfer"] = any(m.startswith("zoo_transfer") for m in sys.modules)
print(json.dumps(out))
"""


def test_trained_hub_models_load_in_plain_keras(tmp_path, hub_presets):
    import keras

    saved = []
    for family, kwargs in (
        ("dinov2", {"cut": "block2", "head_stages": 2}),
        ("resnet", {}),
        ("siglip", {"head_stages": 2}),  # its pooled embedding and its last block's mean
    ):
        card = zoo_transfer.card_from_preset(hub_presets[family], name=f"e2e_{family}.test")
        zoo_transfer.register_model(card, override=True)
        model = zoo_transfer.build(
            card.name, num_classes=2, weights=str(hub_presets[family]), **kwargs
        )
        x = np.random.default_rng(1).uniform(0, 255, (6, *card.input_size)).astype("float32")
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        model.fit(x, np.array([0, 1] * 3), epochs=2, verbose=0)
        model.save(tmp_path / f"{family}.keras")
        np.save(tmp_path / f"{family}.npy", x)
        saved.append((family, model.predict(x, verbose=0)))
    run = subprocess.run(
        [sys.executable, "-c", LOAD, ",".join(f for f, _ in saved)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert loaded["imported zoo_transfer"] is False
    for family, expected in saved:
        np.testing.assert_allclose(np.array(loaded[family]), expected, atol=1e-5)
