"""JobConfig, the option parsers and the out-folder rules: nothing the user made is lost."""

from __future__ import annotations

import json

import pytest

from zoo_transfer.errors import BuildArgumentError, OutputFolderError
from zoo_transfer.job import (
    JobConfig,
    parse_lr_mult,
    parse_sizes,
    parse_unfreeze,
    prepare_out,
    progressive_schedule,
)


def test_parsers_turn_cli_text_into_values():
    assert parse_sizes("96,128, 160") == [96, 128, 160]
    assert parse_unfreeze("2:stage4,4:stage3") == {2: "stage4", 4: "stage3"}
    assert parse_lr_mult("0.01,1") == [0.01, 1.0]


@pytest.mark.parametrize(
    "parser, text, message",
    [
        (parse_sizes, "160,128", "increasing"),
        (parse_sizes, "a,b", "increasing"),
        (parse_unfreeze, "stage4", "EPOCH:STAGE"),
        (parse_lr_mult, "0.1", "lo,hi"),
        (parse_lr_mult, "1,0.1", "lo <= hi"),
    ],
)
def test_parsers_name_the_bad_text(parser, text, message):
    with pytest.raises(BuildArgumentError, match=message):
        parser(text)


def test_progressive_schedule_spreads_sizes_over_the_epochs():
    assert progressive_schedule([96, 128, 160], 6) == {0: 96, 2: 128, 4: 160}
    assert progressive_schedule([24, 32], 5) == {0: 24, 2: 32}
    with pytest.raises(BuildArgumentError, match="at least 3 epochs"):
        progressive_schedule([96, 128, 160], 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs >= 1"),
        ({"recipe": "tiny"}, "Unknown recipe"),
        ({"strategy": "cluster"}, "Unknown strategy"),
        ({"precision": "float16"}, "Unknown precision"),
        ({"unfreeze": {6: "stage4"}, "epochs": 5}, r"epoch 6, but the run has epochs 1-5"),
        ({"unfreeze": {0: "stage4"}, "epochs": 5}, "epoch 0"),
        ({"data": "zoo:flowers"}, r"Unknown embedded data set 'zoo:flowers'.*ships zoo:digits"),
    ],
)
def test_bad_configs_fail_before_anything_runs(kwargs, message):
    with pytest.raises(BuildArgumentError, match=message):
        JobConfig("digitnet", **{"data": "zoo:digits", **kwargs})


def test_epochs_left_to_the_data_are_checked_once_chosen():
    """Without --epochs the number comes from the data; a schedule is checked against it
    when the run fills it in (the run calls dataclasses.replace, which checks again)."""
    import dataclasses

    config = JobConfig("digitnet", "zoo:digits", unfreeze={8: "stage3"}, progressive=[24, 28, 32])
    assert config.epochs is None
    why = "24 training images (< 5,000): 5 epochs after the linear probe"
    with pytest.raises(BuildArgumentError, match=r"epoch 8, but the run has epochs 1-5 \(24 tr"):
        dataclasses.replace(config, epochs=5, chosen={"epochs": why})
    assert dataclasses.replace(config, epochs=10).epochs == 10
    with pytest.raises(BuildArgumentError, match="epochs >= 1"):
        JobConfig("digitnet", "zoo:digits", epochs=True)


def test_config_json_round_trip():
    config = JobConfig("digitnet", "zoo:digits", progressive=[24, 32], unfreeze={2: "stage3"})
    again = JobConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again == config
    assert config.to_json()["epochs_count_from"] == 1


def test_a_config_json_of_0_1_counts_its_unfreeze_epochs_from_0():
    """0.1 wrote 0-based epochs and no `epochs_count_from`: resuming such a run keeps its
    schedule (its epoch 2 is the third epoch)."""
    old = {"model": "digitnet", "data": "zoo:digits", "epochs": 5, "unfreeze": {"2": "stage3"}}
    assert JobConfig.from_json(old).unfreeze == {3: "stage3"}


def _config(**kw):
    return JobConfig("digitnet", "zoo:digits", **kw)


def test_an_existing_folder_is_refused_and_kept(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="--resume .* --overwrite"):
        prepare_out(tmp_path, _config(), resume=False, overwrite=False)
    with pytest.raises(OutputFolderError, match="not a zoo-transfer out folder"):
        prepare_out(tmp_path, _config(), resume=False, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_sets_the_earlier_run_aside_and_never_touches_the_users_files(tmp_path):
    from zoo_transfer.job import drop_earlier_run, restore_earlier_run

    def earlier_run():
        (tmp_path / "config.json").write_text(json.dumps(_config().to_json()))
        (tmp_path / "history.json").write_text("[]")
        (tmp_path / "backup").mkdir()
        (tmp_path / "backup" / "latest.weights.h5").write_bytes(b"w")

    earlier_run()
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "my-folder").mkdir()
    prepare_out(tmp_path, _config(), resume=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".zoo-transfer-replaced", "my-folder", "notes.txt"
    ]  # fmt: skip
    (tmp_path / "config.json").write_text("{}")  # the new run starts, then fails
    restore_earlier_run(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == _config().to_json()
    assert (tmp_path / "backup" / "latest.weights.h5").read_bytes() == b"w"
    assert not (tmp_path / ".zoo-transfer-replaced").exists()

    prepare_out(tmp_path, _config(), resume=False, overwrite=True)
    drop_earlier_run(tmp_path)  # the new run finished an epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-folder", "notes.txt"]


def test_resume_needs_a_run_and_the_same_options(tmp_path):
    with pytest.raises(OutputFolderError, match="Nothing to resume"):
        prepare_out(tmp_path, _config(), resume=True, overwrite=False)
    (tmp_path / "config.json").write_text(json.dumps(_config(epochs=5).to_json()))
    assert prepare_out(tmp_path, _config(epochs=8), resume=True, overwrite=False).epochs == 8
    with pytest.raises(OutputFolderError, match=r"lr \(None -> 0.1\)"):
        prepare_out(tmp_path, _config(lr=0.1), resume=True, overwrite=False)
    with pytest.raises(BuildArgumentError, match="not both"):
        prepare_out(tmp_path, _config(), resume=True, overwrite=True)


def test_confusion_keeps_every_mistake_and_interleaves_the_true_classes():
    import numpy as np

    from zoo_transfer.job import _confusion

    class AlwaysClass2:
        def predict_on_batch(self, images):
            probs = np.zeros((len(images), 3), "float32")
            probs[:, 2] = 1
            return probs

    labels = np.array([0, 0, 0, 1, 1, 2])
    images = np.zeros((6, 4, 4, 3), "float32")
    batches = [(images[:3], labels[:3]), (images[3:], labels[3:])]
    matrix, mistakes, metrics = _confusion(AlwaysClass2(), batches, ["a", "b", "c"])
    assert matrix.tolist() == [[0, 0, 3], [0, 0, 2], [0, 0, 1]]
    assert [m[1] for m in mistakes] == ["a", "b", "a", "b", "a"]  # round robin, all kept
    tta = {f"val_accuracy_tta_{n}": 1 / 6 for n in ("flip", "crop", "flip+crop")}
    assert metrics == {"val_accuracy": 1 / 6, "val_images": 6, **tta}
