"""The default training path from the shell: a linear probe, then fine-tuning (LP-FT),
`final.keras` holding the best of both, and test-time flips measured and applied.

Every step is a new process through the installed console script.
"""

from __future__ import annotations

import json
import re

import pytest
from user_shell import python, shell

# In a process that never imports zoo_transfer: are the two files' weights identical?
SAME_WEIGHTS = """
import sys
import keras, numpy as np
a, b = (keras.saving.load_model(p, safe_mode=True) for p in sys.argv[1:3])
same = all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
names = [layer.name for layer in a.layers]
assert "zoo_transfer" not in sys.modules
print(same, "head_concat" in names)
"""


@pytest.fixture(scope="module")
def run(make_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("lpft")
    train = make_folder(root / "train", per_class=16, classes=3)
    val = make_folder(root / "val", per_class=12, seed=1, classes=3)
    out = root / "run"
    proc = shell("train", "digitnet", "--data", str(train), "--validation", str(val),
                 "--epochs", "3", "--batch-size", "8", "--quiet", "--out", str(out))  # fmt: skip
    return out, val, proc.stdout


def test_the_probe_runs_first_and_final_keras_holds_the_best(run):
    out, _, stdout = run
    probe = json.loads((out / "probe.json").read_text())
    shown = re.search(r"linear probe before the epochs: val_accuracy ([0-9.]+)", stdout)
    assert shown and float(shown.group(1)) == pytest.approx(probe["val_accuracy"], abs=1e-4)
    assert len(probe["tried"]) >= 2 and probe["l2"] in [t[0] for t in probe["tried"]]

    config = json.loads((out / "config.json").read_text())
    assert config["recipe"] == "auto" and config["final"] == "best"
    history = json.loads((out / "history.json").read_text())
    epochs = [r["val_accuracy"] for r in history]
    # every stage trains from the first epoch, after the probe
    assert history[0]["trainable_params"] == history[-1]["trainable_params"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    best = max([probe["val_accuracy"], *epochs])
    assert metrics["val_accuracy"] == pytest.approx(best, abs=1e-6)

    printed = python(SAME_WEIGHTS, str(out / "final.keras"), str(out / "best.keras"))
    same, multi_stage = printed.split()[-2:]
    assert multi_stage == "True"  # the default head reads three stages
    if best > epochs[-1]:  # the last epoch was not the best: final.keras is best.keras
        assert same == "True"
        assert "final.keras holds the " in stdout
    html = (out / "report.html").read_text()
    assert 'id="probe"' in html and f"{probe['val_accuracy']:.4f}" in html


def test_evaluate_scores_the_validation_images_as_the_run_did_with_and_without_flips(run):
    out, val, _ = run
    metrics = json.loads((out / "metrics.json").read_text())
    plain = json.loads(shell("evaluate", str(out / "final.keras"), "--data", str(val),
                             "--format", "json").stdout)  # fmt: skip
    flip = json.loads(shell("evaluate", str(out / "final.keras"), "--data", str(val),
                            "--format", "json", "--tta", "flip").stdout)  # fmt: skip
    assert plain["accuracy"] == pytest.approx(metrics["val_accuracy"], abs=1e-6)
    assert flip["accuracy"] == pytest.approx(metrics["val_accuracy_tta_flip"], abs=1e-6)
    crop = json.loads(shell("evaluate", str(out / "final.keras"), "--data", str(val),
                            "--format", "json", "--tta", "crop").stdout)  # fmt: skip
    assert crop["accuracy"] == pytest.approx(metrics["val_accuracy_tta_crop"], abs=1e-6)
    html = (out / "report.html").read_text()
    assert "Test-time augmentation (evaluate/predict --tta)" in html


def test_a_bad_tta_value_is_refused_with_the_choices(run):
    out, val, _ = run
    proc = shell("evaluate", str(out / "final.keras"), "--data", str(val), "--tta", "rotate",
                 check=False)  # fmt: skip
    assert proc.returncode == 2 and "'none'" in proc.stderr and "'flip+crop'" in proc.stderr
