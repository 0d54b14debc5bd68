"""Third-party cards through the `zoo_transfer.models` entry-point group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from zoo_transfer import PluginWarning
from zoo_transfer.registry import Registry, get_card


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A folder on sys.path holding an installed-looking distribution with two plugins."""
    card = get_card("resnet50").to_dict()
    card.pop("name")
    card.update(arch="acme_resnet", tag="v1", family="acme", aliases=["AcmeNet"])
    (tmp_path / "acme_models.py").write_text(
        "import json\nCARD = json.loads(" + repr(json.dumps(card)) + ")\n"
        "def cards():\n    return [CARD]\n"
    )
    (tmp_path / "acme_broken.py").write_text("raise ImportError('acme_broken needs libfoo')\n")
    dist = tmp_path / "acme_zoo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-zoo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[zoo_transfer.models]\nacme = acme_models:cards\nbroken = acme_broken:CARDS\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_plugin_cards_load_and_broken_plugin_warns_once(plugin_path):
    registry = Registry()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = registry.names()
        registry.names()
        registry.get("acme_resnet")
    plugin_warnings = [w for w in caught if issubclass(w.category, PluginWarning)]
    assert len(plugin_warnings) == 1
    assert "broken" in str(plugin_warnings[0].message)
    assert "acme_broken needs libfoo" in str(plugin_warnings[0].message)
    assert "acme_resnet.v1" in names
    assert "resnet50.imagenet" in names  # built-ins still there
    assert registry.get("AcmeNet").family == "acme"
    assert set(registry.plugin_errors) == {"broken"}


def test_cli_list_survives_a_broken_plugin(plugin_path):
    env = dict(os.environ, PYTHONPATH=str(plugin_path))
    proc = subprocess.run(
        [sys.executable, "-m", "zoo_transfer", "list", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    names = {row["name"] for row in json.loads(proc.stdout)}
    assert "acme_resnet.v1" in names and "resnet50.imagenet" in names
    assert proc.stderr.count("failed to load") == 1
    assert "broken" in proc.stderr


def test_plugin_with_malformed_card_is_reported_with_its_field(tmp_path, monkeypatch):
    (tmp_path / "bad_cards.py").write_text("CARDS = [{'arch': 'bad_net', 'tag': 'x'}]\n")
    dist = tmp_path / "bad_zoo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-zoo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[zoo_transfer.models]\nbad = bad_cards:CARDS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    with pytest.warns(PluginWarning, match="plugin 'bad'.*field 'family'"):
        names = registry.names()
    assert "resnet50.imagenet" in names
