"""LP-FT: the linear probe before the epochs (`probe_head`, `fit_transfer(probe=...)`,
the `lp_ft` recipe), and the probe reading every image as it is, augmentation or not."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def digits():
    from zoo_transfer.recipes.digitnet import demo_digits

    x, y, x_val, y_val, _ = demo_digits(seed=0, train_per_class=12)
    return x, y, x_val, y_val


def _head_kernel(model) -> np.ndarray:
    return model.get_layer("head_logits").kernel.numpy().copy()


def test_the_probe_ignores_the_training_augmentation(fresh_keras, digits):
    """Augmented splits used to give the probe augmented features (and a worse head)."""
    import zoo_transfer
    from zoo_transfer.data import load
    from zoo_transfer.linear_head import fit_linear_head

    x, y, x_val, y_val = digits
    kernels, results = [], []
    for augment in ("none", "light"):
        splits = load((x, y), image_size=32, batch_size=8, validation=(x_val, y_val),
                      augment=augment, seed=0)  # fmt: skip
        fresh_keras.utils.set_random_seed(0)
        model = zoo_transfer.build("digitnet", 5)
        results.append(fit_linear_head(model, splits))
        kernels.append(_head_kernel(model))
        epoch = int(splits.train_images.epoch.numpy())
        assert epoch == 0, "reading the images in order must not advance the epoch"
    np.testing.assert_allclose(kernels[0], kernels[1], rtol=1e-5, atol=1e-6)
    assert results[0].l2 == results[1].l2
    assert results[0].val_accuracy == results[1].val_accuracy


def test_fit_transfer_probes_then_trains_from_the_probe(fresh_keras, digits, capsys):
    import zoo_transfer
    from zoo_transfer.linear_head import fit_linear_head
    from zoo_transfer.training import fit_transfer

    x, y, x_val, y_val = digits
    fresh_keras.utils.set_random_seed(0)
    reference = zoo_transfer.build("digitnet", 5)
    start = reference.get_weights()
    expected = fit_linear_head(reference, (x, y), (x_val, y_val))

    model = zoo_transfer.build("digitnet", 5)
    model.set_weights(start)
    model.compile(fresh_keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])  # fmt: skip
    history = fit_transfer(model, (x, y), (x_val, y_val), epochs=1, probe=True, verbose=2)
    assert "linear probe: val_accuracy" in capsys.readouterr().out
    assert history.probe.l2 == expected.l2
    np.testing.assert_allclose(_head_kernel(model), _head_kernel(reference), rtol=1e-5, atol=1e-6)
    # with a zero learning rate, the epoch scores exactly the probe's head
    assert history.history["val_accuracy"][0] == pytest.approx(expected.val_accuracy, abs=1e-6)

    resumed = zoo_transfer.build("digitnet", 5)
    resumed.set_weights(start)
    resumed.compile("adam", "sparse_categorical_crossentropy")
    again = fit_transfer(resumed, (x, y), epochs=2, initial_epoch=1, probe=True, verbose=0)
    assert again.probe is None  # a resumed run keeps its restored head


def test_a_head_with_hidden_layers_is_not_probed(fresh_keras, digits, capsys):
    import zoo_transfer
    from zoo_transfer.training import probe_head

    x, y, x_val, y_val = digits
    model = zoo_transfer.build("digitnet", 5, head=(16,))
    before = [w.copy() for w in model.get_weights()]
    assert probe_head(model, (x, y), (x_val, y_val)) is None
    assert "skipped" in capsys.readouterr().out
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_lp_ft_plan_probes_and_unfreezes_everything_from_the_first_epoch(fresh_keras, digits):
    from zoo_transfer import recipes
    from zoo_transfer.training import fit_transfer

    x, y, x_val, y_val = digits
    model, plan = recipes.lp_ft("digitnet", 5)
    assert plan.probe and plan.unfreeze == {0: "stem"} and plan.lr_mult == (0.1, 1.0)
    assert "head_concat" in [layer.name for layer in model.layers]  # three stages, avg+max
    assert not plan.callbacks()  # no early stopping: best.keras keeps the best epoch
    from zoo_transfer import transfer_optimizer

    model.compile(transfer_optimizer(model, "adam", learning_rate=plan.learning_rate,
                                     lr_mult=plan.lr_mult),
                  plan.loss, metrics=plan.metrics)  # fmt: skip
    backbone = model.get_layer("digitnet")
    stem = next(layer for layer in backbone.layers if hasattr(layer, "kernel"))  # the first
    before = [stem.kernel.numpy().copy()]
    history = fit_transfer(model, (x, y), (x_val, y_val), plan=plan, epochs=2, verbose=0)
    assert history.probe is not None and not history.cached
    params = history.history["trainable_params"]
    assert params[0] == params[1] == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    changed = [not np.array_equal(before[0], stem.kernel.numpy())]
    assert any(changed), "the stem fine-tunes from the first epoch"
