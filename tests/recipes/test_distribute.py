"""`build` under `tf.distribute.MirroredStrategy` on two logical CPU devices."""

from __future__ import annotations

SCRIPT = """
with strategy.scope():
    model = zoo_transfer.build("mobilenet_v3_small", num_classes=2, weights=None,
                               input_shape=(32, 32, 3))
    model.compile("adam", "sparse_categorical_crossentropy")
backbone = [w.numpy().copy() for w in model.get_layer("mobilenet_v3_small").weights]
head = model.get_layer("head_logits").kernel.numpy().copy()
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
y = rng.integers(0, 2, 16)
history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
assert all(np.isfinite(history.history["loss"]))
assert all(np.array_equal(a, w.numpy()) for a, w in
           zip(backbone, model.get_layer("mobilenet_v3_small").weights))
assert not np.array_equal(head, model.get_layer("head_logits").kernel.numpy())
print("MIRRORED_OK", strategy.num_replicas_in_sync)
"""


def test_mirrored_strategy_fit_on_two_logical_cpus(run_on_two_cpus):
    assert "MIRRORED_OK 2" in run_on_two_cpus(SCRIPT)
