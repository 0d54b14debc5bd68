"""`Resizable`: what the callbacks use of the resizable containers, through public names only."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_METHODS = ("set_size", "set_epoch", "batches_per_pass", "dataset")


def _arrays(n: int = 8, side: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8), np.arange(n) % 2


def test_both_containers_satisfy_the_protocol():
    from zoo_transfer.data import Resizable, ResizableArrays, ResizableImages

    x, y = _arrays()
    arrays = ResizableArrays(x, y, size=8, batch_size=4)
    images = ResizableImages(x, y, size=8, batch_size=4)
    for source in (arrays, images):
        assert isinstance(source, Resizable)
        assert source.batch_size == 4 and source.batches_per_pass() == 2
    for cls in (ResizableArrays, ResizableImages):
        assert all(callable(getattr(cls, name, None)) for name in PROTOCOL_METHODS)
    assert not isinstance(x, Resizable)


def test_loaded_images_show_size_and_epoch_through_public_names():
    from zoo_transfer.data import Resizable, load

    x, y = _arrays(12, 20)
    splits = load(
        (x, y % 3), image_size=16, batch_size=4, validation_split=0.25, augment="light", seed=0
    )
    images = splits.train_images
    assert isinstance(images, Resizable) and isinstance(splits.val_images, Resizable)
    assert int(images.size.numpy()) == 16 and int(images.epoch.numpy()) == 0
    assert images.num_images == 9 and images.batches_per_pass() == 2  # last partial dropped

    images.set_size(24)
    images.set_epoch(3)
    assert int(images.size.numpy()) == 24 and int(images.epoch.numpy()) == 3
    labels = [b[1].numpy().tolist() for b in images.dataset()]
    assert np.shape(labels) == (2, 4)
    assert int(images.epoch.numpy()) == 4  # each pass advances the epoch it draws
    assert next(iter(images.dataset()))[0].shape == (4, 24, 24, 3)

    # The order is a function of (seed, epoch) alone: the permutation `load` set up.
    images.set_epoch(3)
    assert [b[1].numpy().tolist() for b in images.dataset()] == labels
    # ...and `in_order` reads every image once, unaugmented, at the current size.
    once = [b[0].shape[0] for b in images.in_order().dataset()]
    assert sum(once) == 9


def _private_fields(tree: ast.Module, classes: set[str]) -> set[str]:
    """The `self._name` attributes that the methods of `classes` assign."""
    fields = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in classes:
            for sub in ast.walk(node):
                if (
                    isinstance(sub, ast.Attribute)
                    and isinstance(sub.ctx, ast.Store)
                    and isinstance(sub.value, ast.Name)
                    and sub.value.id == "self"
                    and sub.attr.startswith("_")
                    and not sub.attr.startswith("__")
                ):
                    fields.add(sub.attr)
    return fields


def test_no_module_writes_the_containers_private_fields():
    owners = [ROOT / "zoo_transfer" / "data" / name for name in ("containers.py", "arrays.py")]
    fields = set()
    for owner in owners:  # each class may write the fields of its own copies
        fields |= _private_fields(
            ast.parse(owner.read_text()), {"ResizableImages", "ResizableArrays"}
        )
    assert {"_store", "_rows", "_batch_map", "_augmentation", "_multiple"} <= fields
    writes = []
    for folder in ("zoo_transfer", "recipes", "benchmarks", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path in owners:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.ctx, ast.Store)
                    and node.attr in fields
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self")
                ):
                    writes.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert writes == [], "construct the containers with their public API instead"


def test_the_pass_count_is_the_number_of_batches_a_pass_yields():
    """`ProgressiveResizing` compares it with fit's steps: a training split smaller than
    the batch size (load keeps its partial batch) must count as the one batch it is."""
    from zoo_transfer.data import ResizableArrays, ResizableImages, load

    x, y = _arrays(10, 12)
    for drop in (True, False):
        for source in (
            ResizableImages(x, y, size=8, batch_size=4, drop_remainder=drop),
            ResizableArrays(x, y, size=8, batch_size=4, drop_remainder=drop),
        ):
            assert source.batches_per_pass() == len(list(source.dataset())) == (2 if drop else 3)
    small = load((x[:6], y[:6]), image_size=8, batch_size=8, augment="none").train_images
    assert small.batches_per_pass() == len(list(small.dataset())) == 1


def test_images_built_from_arrays_draw_their_order_from_seed_and_epoch():
    from zoo_transfer.data import ResizableImages

    x, y = _arrays(12, 8)
    y = np.arange(12)
    orders = []
    for _ in range(2):
        images = ResizableImages(x, y, size=8, batch_size=12, seed=5)
        images.set_epoch(2)
        orders.append(next(iter(images.dataset()))[1].numpy().tolist())
    assert orders[0] == orders[1] and sorted(orders[0]) == list(range(12))
    images.set_epoch(3)
    assert next(iter(images.dataset()))[1].numpy().tolist() != orders[0]
