"""GradualUnfreezing: the unfreeze takes effect inside the same `fit`, and only there.

Most checks use the package's small `digitnet` card (stages stem, stage1..stage3, 32 px):
what they check does not depend on the architecture, and it traces in a fraction of the
time of a keras.applications model. The BatchNorm policy is also checked on
MobileNetV3Small, a BatchNorm-heavy keras.applications backbone.
"""

from __future__ import annotations

import numpy as np
import pytest

from zoo_transfer import BuildArgumentError
from zoo_transfer.callbacks import GradualUnfreezing
from zoo_transfer.optimizers import transfer_optimizer

BACKBONE = "digitnet"
LAST_LAYER, STAGE2_LAYER = "stage3_block1_conv", "stage2_block1_conv"
STAGE1_LAYER, STEM_LAYER = "stage1_block1_conv", "stem_conv"


@pytest.fixture
def digit_model(fresh_keras):
    """A small transfer model (DigitNet, random weights, 32 px, frozen backbone)."""
    import zoo_transfer

    fresh_keras.utils.set_random_seed(0)
    return zoo_transfer.build(BACKBONE, 3, weights=None)


def _recorder(model):
    import keras

    backbone = model.get_layer(BACKBONE)
    s3, s1 = backbone.get_layer(LAST_LAYER), backbone.get_layer(STAGE1_LAYER)

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.start = (s3.kernel.numpy().copy(), s1.kernel.numpy().copy())
            self.ends = []

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append((s3.kernel.numpy().copy(), s1.kernel.numpy().copy()))

    return Record()


def _check_unfreeze_at_epoch_1(record):
    s3_start, s1_start = record.start
    np.testing.assert_array_equal(record.ends[0][0], s3_start)  # frozen through epoch 0
    assert not np.array_equal(record.ends[1][0], s3_start)  # moves in epoch 1
    assert not np.array_equal(record.ends[2][0], record.ends[1][0])
    for _, s1 in record.ends:  # stage1 is never unfrozen
        np.testing.assert_array_equal(s1, s1_start)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_unfreeze_takes_effect_in_the_same_fit(digit_model, small_data, jit_compile):
    model = digit_model
    model.compile(
        transfer_optimizer(model, "adam", learning_rate=1e-2),
        "sparse_categorical_crossentropy",
        jit_compile=jit_compile,
    )
    record = _recorder(model)
    unfreeze = GradualUnfreezing({1: "stage3"}, verbose=0)
    history = model.fit(
        *small_data, epochs=3, batch_size=8, verbose=0, callbacks=[unfreeze, record]
    )
    _check_unfreeze_at_epoch_1(record)
    params = history.history["trainable_params"]
    assert params[0] < params[1] == params[2]
    assert unfreeze.events == [(1, "stage3")]


def test_the_naive_callback_changes_nothing(digit_model, small_data):
    """What the issue measured: `trainable = True` alone, mid-fit, trains nothing."""
    import keras

    model = digit_model
    model.compile("adam", "sparse_categorical_crossentropy")
    backbone = model.get_layer(BACKBONE)

    class Naive(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                backbone.trainable = True

    record = _recorder(model)
    model.fit(*small_data, epochs=3, batch_size=8, verbose=0, callbacks=[Naive(), record])
    assert backbone.get_layer(LAST_LAYER).trainable  # the flag did change
    for s3, _ in record.ends:
        np.testing.assert_array_equal(s3, record.start[0])


def test_cumulative_schedule_with_stage_count(digit_model, small_data):
    model = digit_model
    model.compile(
        transfer_optimizer(model, "sgd", learning_rate=0.1), "sparse_categorical_crossentropy"
    )
    history = model.fit(
        *small_data,
        epochs=3,
        batch_size=8,
        verbose=0,
        callbacks=[GradualUnfreezing({0: 1, 2: 2}, verbose=0)],
    )
    backbone = model.get_layer(BACKBONE)
    trainable = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert LAST_LAYER in trainable and STAGE2_LAYER in trainable  # the last 1, then 2
    assert STAGE1_LAYER not in trainable and STEM_LAYER not in trainable
    params = history.history["trainable_params"]
    assert params[0] == params[1] < params[2]  # stage2 joined at epoch 2


@pytest.mark.parametrize(
    ("schedule", "message"),
    [({5: "stage3"}, "epochs 0-2"), ({1: "stage9"}, "neither a stage"), ({1: 9}, "last 9")],
)
def test_bad_schedules_fail_before_training(digit_model, small_data, schedule, message):
    model = digit_model
    model.compile(transfer_optimizer(model), "sparse_categorical_crossentropy")
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(BuildArgumentError, match=message):
        model.fit(*small_data, epochs=3, verbose=0, callbacks=[GradualUnfreezing(schedule)])
    for a, w in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(a, w.numpy())


def test_plain_optimizer_with_state_is_refused_with_the_fix(digit_model, small_data):
    # one without state is converted (tests/test_bad_input.py); this one has stepped
    digit_model.compile("adam", "sparse_categorical_crossentropy")
    digit_model.fit(*small_data, epochs=1, verbose=0)
    with pytest.raises(BuildArgumentError, match="transfer_optimizer"):
        digit_model.fit(
            *small_data, epochs=2, verbose=0, callbacks=[GradualUnfreezing({1: "stage3"})]
        )


def test_config_round_trip():
    cb = GradualUnfreezing({2: "stage4", 4: 2}, verbose=0)
    again = GradualUnfreezing.from_config(cb.get_config())
    assert again.schedule == {2: "stage4", 4: 2}


def test_resume_with_backup_and_restore_matches_an_uninterrupted_run(
    fresh_keras, tmp_path, small_data
):
    import keras

    import zoo_transfer

    def run(backup_dir, stop_after=None):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = zoo_transfer.build(BACKBONE, 3, weights=None)
        model.compile(
            transfer_optimizer(model, "adam", learning_rate=1e-2), "sparse_categorical_crossentropy"
        )
        callbacks = [
            GradualUnfreezing({2: "stage3"}, verbose=0),
            keras.callbacks.BackupAndRestore(str(backup_dir)),
        ]

        class Crash(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == stop_after:
                    raise KeyboardInterrupt("simulated kill")

        if stop_after is not None:
            callbacks.append(Crash())
        try:
            history = model.fit(
                *small_data, epochs=4, batch_size=8, shuffle=False, verbose=0, callbacks=callbacks
            )
        except KeyboardInterrupt:
            return None, None
        return model, history

    reference, _ = run(tmp_path / "a")
    assert run(tmp_path / "b", stop_after=2) == (None, None)  # killed after epoch 3 of 4
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed, history = run(tmp_path / "b")
    assert not [w for w in caught if "optimizer" in str(w.message).lower()]
    assert len(history.history["loss"]) == 1  # only epoch 4 ran again
    backbone = resumed.get_layer(BACKBONE)
    assert backbone.get_layer(LAST_LAYER).trainable
    assert not backbone.get_layer(STAGE2_LAYER).trainable
    for a, b in zip(reference.weights, resumed.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)


MIRRORED = """
from zoo_transfer.callbacks import GradualUnfreezing
from zoo_transfer.optimizers import transfer_optimizer
keras.utils.set_random_seed(0)
with strategy.scope():
    model = zoo_transfer.build("digitnet", 3, weights=None)
    model.compile(transfer_optimizer(model, "adam", learning_rate=1e-2),
                  "sparse_categorical_crossentropy")
backbone = model.get_layer("digitnet")
s3, s1 = backbone.get_layer("stage3_block1_conv"), backbone.get_layer("stage1_block1_conv")
start = (s3.kernel.numpy().copy(), s1.kernel.numpy().copy())
ends = []
class Record(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        ends.append((s3.kernel.numpy().copy(), s1.kernel.numpy().copy()))
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32"); y = rng.integers(0, 3, 16)
model.fit(x, y, epochs=3, batch_size=8, verbose=0,
          callbacks=[GradualUnfreezing({1: "stage3"}, verbose=0), Record()])
assert np.array_equal(ends[0][0], start[0])
assert not np.array_equal(ends[1][0], start[0])
assert not np.array_equal(ends[2][0], ends[1][0])
assert all(np.array_equal(e[1], start[1]) for e in ends)
print("MIRRORED_UNFREEZE_OK", strategy.num_replicas_in_sync)
"""


def test_unfreeze_under_mirrored_strategy(run_on_two_cpus):
    assert "MIRRORED_UNFREEZE_OK 2" in run_on_two_cpus(MIRRORED)


def _bn_stats(model, backbone, name):
    return model.get_layer(backbone).get_layer(name).moving_mean.numpy().copy()


@pytest.mark.parametrize("policy", ["frozen", "train"])
def test_batchnorm_policy(fresh_keras, small_data, policy):
    import keras

    import zoo_transfer

    keras.utils.set_random_seed(0)
    model = zoo_transfer.build(BACKBONE, 3, weights=None, bn=policy)
    model.compile(
        transfer_optimizer(model, "adam", learning_rate=1e-2), "sparse_categorical_crossentropy"
    )
    last_bn, stage1_bn = "stage3_block1_bn", "stage1_block1_bn"
    start3, start1 = _bn_stats(model, BACKBONE, last_bn), _bn_stats(model, BACKBONE, stage1_bn)
    after = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            after.append(_bn_stats(model, BACKBONE, last_bn))

    model.fit(
        *small_data,
        epochs=2,
        batch_size=8,
        verbose=0,
        callbacks=[GradualUnfreezing({1: "stage3"}, bn=policy, verbose=0), Record()],
    )
    np.testing.assert_array_equal(after[0], start3)  # still frozen in epoch 0
    np.testing.assert_array_equal(_bn_stats(model, BACKBONE, stage1_bn), start1)
    if policy == "frozen":
        np.testing.assert_array_equal(after[1], start3)  # unfrozen, still inference mode
    else:
        assert not np.array_equal(after[1], start3)  # unfrozen and training its statistics


def test_batchnorm_policies_on_a_keras_applications_backbone(fresh_keras, small_data):
    """MobileNetV3Small, one model: `frozen` unfreezes stage4 with its BatchNorm layers
    kept in inference mode (the kernels move, the statistics do not); a second `fit`
    with `train` unfreezes the same BatchNorm layers, whose statistics then move.

    Stage4's BatchNorm starts training later than its convolutions, so the optimizer
    keeps a step counter per layer (`per="layer"`), as that refusal asks.
    """
    import keras

    import zoo_transfer

    name = "mobilenet_v3_small"
    keras.utils.set_random_seed(0)
    model = zoo_transfer.build(name, 3, weights=None, input_shape=(32, 32, 3), bn="frozen")
    model.compile(
        transfer_optimizer(model, "adam", learning_rate=1e-2, per="layer"),
        "sparse_categorical_crossentropy",
    )
    stage4_bn, stage1_bn = "conv_1_bn", "expanded_conv_project_bn"
    stage4_conv = model.get_layer(name).get_layer("conv_1")
    start4, start1 = _bn_stats(model, name, stage4_bn), _bn_stats(model, name, stage1_bn)
    kernel = stage4_conv.kernel.numpy().copy()
    after = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            after.append((_bn_stats(model, name, stage4_bn), stage4_conv.kernel.numpy().copy()))

    fit = dict(batch_size=8, verbose=0)
    model.fit(
        *small_data,
        epochs=2,
        callbacks=[GradualUnfreezing({1: "stage4"}, bn="frozen", verbose=0), Record()],
        **fit,
    )
    np.testing.assert_array_equal(after[0][0], start4)  # still frozen in epoch 0
    np.testing.assert_array_equal(after[0][1], kernel)
    np.testing.assert_array_equal(after[1][0], start4)  # unfrozen, still inference mode
    assert not np.array_equal(after[1][1], kernel)  # while its kernels train
    assert not model.get_layer(name).get_layer(stage4_bn).trainable

    model.fit(
        *small_data,
        epochs=1,
        callbacks=[GradualUnfreezing({0: "stage4"}, bn="train", verbose=0), Record()],
        **fit,
    )
    assert model.get_layer(name).get_layer(stage4_bn).trainable
    assert not np.array_equal(after[2][0], start4)  # unfrozen and training its statistics
    np.testing.assert_array_equal(_bn_stats(model, name, stage1_bn), start1)  # never unfrozen


def test_keras_file_saved_mid_fit_resumes_with_the_optimizer_state(
    fresh_keras, tmp_path, small_data
):
    """Save a `.keras` after epoch 2 of 4, reload, finish: same weights as one run.

    Keras reloads the optimizer built over the trainable variables only and would skip
    its state (with a warning) when the count differs. `GroupedOptimizer` saves by path,
    and `GradualUnfreezing` rebinds the reloaded optimizer before stage2 unfreezes.
    """
    import warnings

    import keras

    import zoo_transfer

    schedule = {1: "stage3", 3: "stage2"}
    path = tmp_path / "mid.keras"

    class SaveThenCrash(keras.callbacks.Callback):
        state: dict = {}

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.save(path)
                opt = self.model.optimizer
                SaveThenCrash.state = {v.path: v.numpy().copy() for v in opt.variables}
                raise KeyboardInterrupt("simulated kill")

    def fresh_model():
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = zoo_transfer.build(BACKBONE, 3, weights=None, dropout=0.0)
        model.compile(
            transfer_optimizer(model, "adam", learning_rate=1e-2), "sparse_categorical_crossentropy"
        )
        return model

    fit = dict(batch_size=8, shuffle=False, verbose=0)
    reference = fresh_model()
    reference.fit(*small_data, epochs=4, callbacks=[GradualUnfreezing(schedule, verbose=0)], **fit)
    expected = [w.numpy() for w in reference.weights]

    interrupted = fresh_model()
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(
            *small_data,
            epochs=4,
            callbacks=[GradualUnfreezing(schedule, verbose=0), SaveThenCrash()],
            **fit,
        )
    saved = SaveThenCrash.state
    assert any(np.any(v) for p, v in saved.items() if "velocity" in p)  # real Adam state

    keras.backend.clear_session()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.saving.load_model(path)
    assert not [w for w in caught if "optimizer" in str(w.message).lower()]
    restored = {v.path: v.numpy() for v in model.optimizer.variables}
    for p, value in restored.items():  # built over the trainable set, state restored by path
        np.testing.assert_array_equal(value, saved[p], err_msg=p)
    assert len(restored) < len(saved)

    unfreeze = GradualUnfreezing(schedule, verbose=0)
    model.fit(*small_data, initial_epoch=2, epochs=4, callbacks=[unfreeze], **fit)
    assert len(model.optimizer.variables) == len(saved)  # rebound to every layer
    backbone = model.get_layer(BACKBONE)
    assert backbone.get_layer(STAGE2_LAYER).trainable  # stage2, unfrozen at 3
    for w, want in zip(model.weights, expected, strict=True):
        np.testing.assert_allclose(w.numpy(), want, rtol=1e-5, atol=1e-6, err_msg=w.path)
