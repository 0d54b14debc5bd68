"""From the shell: the run measures the domain, the situation recipe cuts where a stage
probe peaks, and the report shows the model choice `zoo-transfer rank` measured."""

from __future__ import annotations

import json

import pytest
from e2e.user_shell import python, shell

TRAIN = ["train", "digitnet", "--batch-size", "8", "--quiet", "--epochs", "1",
         "--augment", "none"]  # fmt: skip

# Plain Keras: the name of the layer the saved backbone ends with.
BACKBONE_END = """
import sys, keras
model = keras.saving.load_model(sys.argv[1], compile=False)
backbone = model.get_layer("digitnet")
print("END", backbone.output.name.split("/")[0] if hasattr(backbone.output, "name") else "")
print("LAYERS", ",".join(layer.name for layer in backbone.layers))
"""


@pytest.fixture(scope="module")
def digits(tmp_path_factory, make_folder):
    root = tmp_path_factory.mktemp("domain")
    return make_folder(root / "train", per_class=10, classes=3)


def test_the_run_measures_the_domain_and_picks_the_situation(digits, tmp_path):
    out = tmp_path / "run"
    done = shell(*TRAIN, "--data", str(digits), "--recipe", "situation", "--out", str(out))
    assert "domain: digitnet.digits04's source head is on average" in done.stdout
    assert "look similar to its pretraining data" in done.stdout  # new digits, digit model
    assert "recipe: 24 training images (small" in done.stdout  # 30 less the validation fifth
    config = json.loads((out / "config.json").read_text())
    assert config["similar"] is None and config["recipe"] == "situation"  # measured, not set
    html = (out / "report.html").read_text()
    assert "Domain: digitnet.digits04&#x27;s source head" in html
    assert "Recipe small_similar" in html


def test_different_data_is_cut_where_the_stage_probe_peaks(digits, tmp_path):
    out = tmp_path / "run"
    done = shell(*TRAIN, "--data", str(digits), "--recipe", "situation", "--different",
                 "--out", str(out))  # fmt: skip
    assert "domain: given: --different." in done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("recipe: "))
    cut = line.split("peaks at ")[1].split(" ")[0]
    accuracies = dict(
        item.rsplit(" ", 1) for item in line.split("(", 2)[2].split(")")[0].split(", ")
    )
    assert float(accuracies[cut]) == max(float(a) for a in accuracies.values())
    layers = python(BACKBONE_END, str(out / "final.keras")).split("LAYERS ")[1].split(",")
    assert layers[-1].strip() == f"{cut}_out"  # the digitnet card's stage layers: <stage>_out


def test_the_report_ranks_the_candidates_rank_measured(digits, tmp_path):
    ranked = shell("rank", "--data", str(digits), "--models", "digitnet", "--controls",
                   "--format", "json", "--quiet")  # fmt: skip
    (tmp_path / "rank.json").write_text(ranked.stdout)
    out = tmp_path / "run"
    shell(*TRAIN, "--data", str(digits), "--rank", str(tmp_path / "rank.json"),
          "--out", str(out))  # fmt: skip
    html = (out / "report.html").read_text()
    table = html.split('<table id="model-choice">')[1].split("</table>")[0]
    rows = [r for r in table.split("<tr>")[2:]]
    assert len(rows) == 2  # the model and its random control
    assert "digitnet.digits04" in rows[0] and "<td>yes</td>" in rows[0]  # trained, ranked 1st
    assert "random" in rows[1] and "<td>yes</td>" not in rows[1]


def test_a_broken_rank_file_fails_before_training(digits, tmp_path):
    (tmp_path / "rank.json").write_text('{"not": "a rank"}')
    out = tmp_path / "run"
    failed = shell(*TRAIN, "--data", str(digits), "--rank", str(tmp_path / "rank.json"),
                   "--out", str(out), check=False)  # fmt: skip
    assert failed.returncode == 2
    assert "--rank" in failed.stderr and "zoo-transfer rank --format json" in failed.stderr
    assert not out.exists()
