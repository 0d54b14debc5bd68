"""`zoo-transfer train`: the out folder, skipped files, stage events, bad input, resume.

All runs use the embedded `digitnet` card (offline weights, 32 px) on a digits folder.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from zoo_transfer.cli import cli

TRAIN = ["train", "digitnet", "--batch-size", "8", "--augment", "none", "--quiet"]


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def finished_run(digit_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    with pytest.warns(UserWarning, match="2 ") as caught:
        result = _run(
            *TRAIN,
            "--data", str(digit_folder),
            "--epochs", "4",
            "--progressive", "32,40",
            "--unfreeze", "3:stage3",
            "--lr", "0.003",
            "--out", str(out),
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, result.output, caught


def test_out_folder_holds_models_history_config_and_report(finished_run, digit_folder):
    out, output, _ = finished_run
    for name in (
        "best.keras", "final.keras", "labels.json", "history.json", "config.json",
        "metrics.json", "report.html", "curves.png", "confusion.png", "misclassified.png",
    ):  # fmt: skip
        assert (out / name).is_file(), name
    assert json.loads((out / "labels.json").read_text()) == ["5", "6", "7", "8", "9"]
    config = json.loads((out / "config.json").read_text())
    assert config["progressive"] == [32, 40] and config["unfreeze"] == {"3": "stage3"}
    assert config["data"] == str(digit_folder)
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]  # as Keras prints them
    assert [r["image_size"] for r in history] == [32, 32, 40, 40]
    params = [r["trainable_params"] for r in history]
    assert params[0] == params[1] < params[2] == params[3]  # stage3 trains from epoch 3
    assert "done: val_accuracy" in output


def test_stage_events_reach_the_report(finished_run):
    from zoo_transfer.job import _as_lists, _events

    out, _, _ = finished_run
    events = _events(_as_lists(json.loads((out / "history.json").read_text())))
    assert [(e["epoch"], e["kind"]) for e in events] == [(2, "resize"), (2, "unfreeze")]
    events = _events(_as_lists(json.loads((out / "history.json").read_text())), {2: "stage3"})
    assert events[1]["detail"].startswith("stage3: ")
    html = (out / "report.html").read_text()
    assert "32 -&gt; 40 px" in html or "32 -> 40 px" in html
    assert "unfreeze" in html and "stage3: " in html


def test_two_bad_files_are_skipped_and_reported(finished_run):
    out, output, caught = finished_run
    assert "skipped 2 unreadable files" in output
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.jpg" in messages and "notes.jpg" in messages


def test_final_model_predicts_like_evaluate_with_its_labels(finished_run, digit_folder):
    from zoo_transfer.input_spec import InputSpec
    from zoo_transfer.model_file import read_input_spec, read_labels
    from zoo_transfer.registry import get_card

    out, _, _ = finished_run
    assert read_labels(out / "final.keras") == ["5", "6", "7", "8", "9"]
    spec = InputSpec.from_card(get_card("digitnet"), 40)  # the card's, at the last size
    assert read_input_spec(out / "final.keras") == read_input_spec(out / "best.keras") == spec
    image = digit_folder / "8" / "001.png"
    predicted = json.loads(
        _run("predict", str(out / "final.keras"), str(image), "--format", "json").stdout
    )
    evaluated = json.loads(
        _run("evaluate", str(out / "final.keras"), "--data", str(digit_folder), "--format",
             "json").stdout
    )  # fmt: skip
    sample = next(s for s in evaluated["samples"] if s["item"].endswith("8/001.png"))
    assert predicted[0]["top"][0]["class"] == sample["predicted"]


def test_an_existing_out_folder_is_refused_and_left_intact(finished_run, digit_folder):
    out, _, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    result = CliRunner().invoke(cli, [*TRAIN, "--data", str(digit_folder), "--out", str(out)])
    assert result.exit_code == 2
    assert "--resume" in result.output and "--overwrite" in result.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_resume_with_other_classes_is_refused(finished_run, digit_folder, tmp_path, make_folder):
    out, _, _ = finished_run
    config = json.loads((out / "config.json").read_text())
    other = make_folder(tmp_path / "three", per_class=3, classes=3)
    config["data"] = str(other)
    moved = tmp_path / "run"
    moved.mkdir()
    for name in ("config.json", "labels.json", "history.json"):
        (moved / name).write_text((out / name).read_text())
    (moved / "config.json").write_text(json.dumps(config))
    args = [*TRAIN, "--data", str(other), "--epochs", "5", "--progressive", "32,40",
            "--unfreeze", "3:stage3", "--lr", "0.003", "--out", str(moved), "--resume"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "5 classes" in result.output and "now has 3" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image-size", "8"], "8 px is below digitnet.digits04's minimum input of 16 px"),
        (["--progressive", "96,64"], "increasing sizes"),
        (["--unfreeze", "7:stage3"], "epoch 7"),
        (["--unfreeze", "0:stage3"], "Epochs count from 1"),
        (["--unfreeze", "1:stage9"], "stage9"),
    ],
)
def test_bad_options_fail_before_training(digit_folder, tmp_path, args, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, [*TRAIN, "--data", str(digit_folder), "--epochs", "3", "--out", str(out), *args]
    )
    assert result.exit_code != 0
    assert message in result.output
    assert not (out / "final.keras").exists()


@pytest.mark.parametrize("kind", ["missing", "empty", "single"])
def test_bad_data_fails_clearly_and_keeps_an_earlier_run(tmp_path, kind, make_folder):
    data = tmp_path / "data"
    if kind == "empty":
        data.mkdir()
    elif kind == "single":
        (data / "only").mkdir(parents=True)
        make_folder(tmp_path / "one", per_class=2, classes=1)
        data = tmp_path / "one"
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")  # an earlier run that --overwrite may replace
    result = CliRunner().invoke(
        cli, [*TRAIN, "--data", str(data), "--out", str(out), "--overwrite"]
    )
    assert result.exit_code == 2, result.output
    assert str(data) in result.output
    assert (out / "config.json").read_text() == "{}"  # not replaced: the data was bad


def test_drop_empty_classes_trains_on_the_other_classes(tmp_path, make_folder):
    data = make_folder(tmp_path / "data", per_class=8, classes=3)
    (data / "empty").mkdir()
    (data / "empty" / "notes.jpg").write_text("not an image")
    args = [*TRAIN, "--data", str(data), "--epochs", "1"]
    refused = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a")])
    assert refused.exit_code == 2 and "--drop-empty-classes" in refused.output
    with pytest.warns(UserWarning, match=r"\['empty'\].*left out"):
        done = CliRunner().invoke(
            cli, [*args, "--out", str(tmp_path / "b"), "--drop-empty-classes"],
            catch_exceptions=False,
        )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "b" / "labels.json").read_text()) == ["5", "6", "7"]
    assert json.loads((tmp_path / "b" / "config.json").read_text())["drop_empty_classes"]


@pytest.mark.parametrize(
    "extra, cached",
    [
        (["--recipe", "small-similar", "--augment", "none"], True),
        (["--recipe", "small-similar", "--augment", "light"], False),  # not precomputable
        (["--recipe", "small-similar", "--augment", "none", "--no-cache-features"], False),
        (["--recipe", "small-similar", "--augment", "none", "--unfreeze", "1:stage3"], False),
        (["--augment", "none"], False),  # the default, lp-ft, fine-tunes every stage
    ],
)
def test_cached_features_are_used_exactly_when_they_apply(digit_folder, tmp_path, extra, cached):
    out = tmp_path / "out"
    args = ["train", "digitnet", "--batch-size", "8", "--quiet", "--data", str(digit_folder),
            "--epochs", "2", "--image-size", "32", "--out", str(out), *extra]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert ("cached backbone features" in result.stdout) is cached
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] and "val_accuracy" in history[0]
    assert (out / "final.keras").is_file()


# Signals and resume (Ctrl-C, kill -9 while saving and mid-epoch, a cut backup, with a
# progressive schedule and an unfreeze) are tested through the console script in
# tests/e2e/test_resume.py.


def test_mixed_precision_run_unfreezes_and_leaves_the_global_policy_alone(digit_folder, tmp_path):
    import keras

    from zoo_transfer.model_file import load_for_inference

    out = tmp_path / "mixed"
    args = [*TRAIN, "--data", str(digit_folder), "--epochs", "2", "--image-size", "32",
            "--unfreeze", "2:stage3", "--precision", "mixed_float16",
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert keras.config.dtype_policy().name == "float32"  # restored after the run
    history = json.loads((out / "history.json").read_text())
    assert history[0]["trainable_params"] < history[1]["trainable_params"]
    assert all(np.isfinite(r["loss"]) for r in history)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # optimizer state loads without "Skipping" warnings
        model, names, size = load_for_inference(out / "final.keras")
    conv = next(layer for layer in model.get_layer("digitnet").layers if layer.weights)
    assert conv.compute_dtype == "float16"  # saved and reloaded in mixed precision
    probs = model.predict(np.zeros((2, *size, 3), "float32"), verbose=0)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(-1), 1, atol=1e-3)
