"""Bad input across the package: each case gets an error (or warning) that names it and the fix."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from zoo_transfer import BuildArgumentError, DuplicateModelError
from zoo_transfer.errors import DataWarning, WeightsMismatchError


def test_numpy_integer_num_classes_is_accepted(fresh_keras):
    import zoo_transfer

    y = np.array([0, 2, 1])
    model = zoo_transfer.build("digitnet", y.max() + 1, weights=None)
    assert model.output.shape[-1] == 3
    with pytest.raises(BuildArgumentError, match="positive int"):
        zoo_transfer.build("digitnet", np.float64(3.0), weights=None)


def test_images_in_0_1_warn_with_the_fix():
    from zoo_transfer import data

    x = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 3)).astype("float32")
    with pytest.warns(DataWarning, match=r"\[0, 1\].*x \* 255"):
        data.load((x, np.arange(8) % 2), image_size=16, validation_split=None, augment="none")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # 0-255 floats: no warning
        data.load((x * 255, np.arange(8) % 2), image_size=16, validation_split=None)


def test_labels_with_gaps_warn_naming_the_missing_classes():
    from zoo_transfer import data

    x = np.zeros((4, 16, 16, 3), "uint8")
    with pytest.warns(DataWarning, match=r"8 classes.*\[1, 2, 3, 4, 5, 6\] have no sample"):
        splits = data.load((x, np.array([0, 7, 0, 7])), image_size=16, validation_split=None)
    assert len(splits.class_names) == 8


@pytest.mark.parametrize("lr", ["-1", "nan", "inf", "0"])
def test_lr_must_be_finite_and_positive(lr):
    from zoo_transfer.job import JobConfig

    with pytest.raises(BuildArgumentError, match=r"--lr to be a finite number > 0"):
        JobConfig("digitnet", "zoo:digits", lr=float(lr))


def test_run_files_are_valid_json_even_when_the_loss_diverges(tmp_path):
    from zoo_transfer.job import _write_json

    _write_json(tmp_path / "history.json", [{"loss": float("nan"), "acc": np.float32(0.5)}])
    assert json.loads((tmp_path / "history.json").read_text()) == [{"loss": None, "acc": 0.5}]


def test_an_alias_naming_another_model_is_refused():
    from zoo_transfer.registry import REGISTRY, get_card

    card = get_card("digitnet").to_dict()
    card.pop("name")
    card.update(arch="my_digits", aliases=["resnet50"])
    with pytest.raises(DuplicateModelError, match="alias 'resnet50'.*'resnet50'"):
        REGISTRY.register(card)
    assert get_card("resnet50").arch == "resnet50"


def test_validate_on_a_binary_file_is_a_clear_error(tmp_path):
    blob = tmp_path / "weights.h5"
    blob.write_bytes(bytes(range(256)) * 4)
    proc = subprocess.run(
        [sys.executable, "-m", "zoo_transfer", "validate", str(blob)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "not a card file" in proc.stderr and "Traceback" not in proc.stderr


def test_validate_fails_a_card_whose_constructor_cannot_be_found(tmp_path):
    """Through the CLI for a module that does not exist; the other ways a constructor can
    be missing (no such function, no such keras.applications name) in-process."""
    import dataclasses

    from zoo_transfer.errors import CardValidationError
    from zoo_transfer.recipes import constructor
    from zoo_transfer.registry import get_card

    card = get_card("digitnet").to_dict()
    card.pop("name", None)
    card.update(arch="my_net", constructor="no_such_pkg.models:build", aliases=[])
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    proc = subprocess.run(
        [sys.executable, "-m", "zoo_transfer", "validate", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout
    assert f"{path}: card 'my_net.digits04': field 'constructor'" in proc.stderr
    assert "module 'no_such_pkg.models' cannot be imported" in proc.stderr
    assert "Traceback" not in proc.stderr
    real = get_card("digitnet")
    for name, message in (
        ("json:no_such_function", "module 'json' has no callable 'no_such_function'"),
        ("ResNet51", "keras.applications has no constructor 'ResNet51'"),
    ):
        with pytest.raises(CardValidationError, match=re.escape(message)):
            constructor(dataclasses.replace(real, constructor=name), source=str(path))


def test_teachable_machine_labels_must_be_a_list(tmp_path, monkeypatch):
    from zoo_transfer.recipes import _teachable

    (tmp_path / "metadata.json").write_text(json.dumps({"labels": 5, "imageSize": 224}))
    monkeypatch.setattr(_teachable, "is_tfjs_folder", lambda folder: True)
    with pytest.raises(WeightsMismatchError, match='"labels" to be a list'):
        _teachable.load_teachable_machine(tmp_path)


def test_public_submodules_are_attributes():
    code = (
        "import sys, zoo_transfer\n"
        "assert zoo_transfer.registry.get_card('resnet50')\n"
        "assert 'tensorflow' not in sys.modules\n"
        "assert callable(zoo_transfer.data.load)\n"
        "assert callable(zoo_transfer.saving.save_for_inference)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_gradual_unfreezing_converts_a_plain_optimizer_without_state(fresh_keras):
    import zoo_transfer
    from zoo_transfer import GradualUnfreezing, GroupedOptimizer

    keras = fresh_keras
    keras.utils.set_random_seed(0)
    model = zoo_transfer.build("digitnet", 3, weights=None)
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = np.arange(16) % 3
    backbone = model.get_layer("digitnet")
    before = {w.path: keras.ops.convert_to_numpy(w) for w in backbone.weights}
    model.fit(x, y, epochs=2, verbose=0, callbacks=[GradualUnfreezing({1: 1}, verbose=0)])
    assert isinstance(model.optimizer, GroupedOptimizer)
    now = {w.path: keras.ops.convert_to_numpy(w) for w in backbone.weights}
    changed = {p for p in now if not np.array_equal(before[p], now[p])}
    unfrozen = {w.path for w in backbone.trainable_weights}
    assert unfrozen and changed == unfrozen  # only the last stage trained, from epoch 1

    stepped = zoo_transfer.build("digitnet", 3, weights=None)
    stepped.compile("adam", "sparse_categorical_crossentropy")
    stepped.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(BuildArgumentError, match="already holds training state"):
        stepped.fit(x, y, epochs=2, verbose=0, callbacks=[GradualUnfreezing({1: 1}, verbose=0)])


def test_specific_errors_stand_where_bare_key_and_value_errors_were(fresh_keras):
    import zoo_transfer
    from zoo_transfer.errors import NotATransferModelError, UnknownStageError
    from zoo_transfer.recipes.stages import find_backbone

    with pytest.raises(
        UnknownStageError, match=r"^resnet50\.imagenet has no stage 'stage9'.*stage4"
    ):
        zoo_transfer.get_card("resnet50").stage("stage9")
    assert issubclass(UnknownStageError, KeyError)  # what `Card.stage` raised before
    plain = fresh_keras.Sequential([fresh_keras.Input((4,)), fresh_keras.layers.Dense(2)])
    with pytest.raises(NotATransferModelError, match="zoo_transfer.build"):
        find_backbone(plain)
    assert zoo_transfer.ArgumentError is zoo_transfer.BuildArgumentError
