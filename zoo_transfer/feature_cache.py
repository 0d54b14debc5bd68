"""Backbone features kept on disk between commands: `rank` writes them, `train` reads them.

`zoo-transfer rank` runs every candidate's frozen backbone once over a folder of images.
In the same pass it pools the maps that the head of `train`'s default recipe (`lp_ft`)
reads, exactly as that head pools and joins them, and stores the rows here; a later
`zoo-transfer train` of that model on that folder fits its linear probe on them instead
of running the backbone again.

An entry is only reused when everything that shaped the features is the same: the
model, its weights (a weights file by path, size and modification time; random weights
are never stored), the input spec (side, interpolation, antialias, crop), and every
image file (path, size and modification time). Change one file and the entry is not
found. Entries live in `$ZOO_TRANSFER_CACHE_DIR/features` (default
`~/.cache/zoo-transfer/features`); deleting the folder is always safe.

```python
cache = FeatureCache()
cache.put("mobilenet.a025_224|lp_ft", "imagenet", spec, files, features)
cache.get("mobilenet.a025_224|lp_ft", "imagenet", spec, files)  # the same rows, or None
```
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.input_spec import InputSpec

_VERSION = 1  # bump when what a stored feature means changes
# The model key of what `rank` stores for `train`'s probe: the features the head of the
# default recipe, `lp_ft`, reads (`recipes.lp_ft_features`).
PROBE_KEY = "{}|lp_ft"


def default_root() -> Path:
    """`$ZOO_TRANSFER_CACHE_DIR/features`, else `~/.cache/zoo-transfer/features`."""
    base = os.environ.get("ZOO_TRANSFER_CACHE_DIR")
    root = Path(base) if base else Path.home() / ".cache" / "zoo-transfer"
    return root / "features"


def _file_id(path: str | os.PathLike) -> list[Any]:
    p = Path(path).resolve()
    stat = p.stat()
    return [str(p), int(stat.st_size), int(stat.st_mtime_ns)]


def _weights_id(weights: Any) -> Any:
    """What identifies the weights; None for weights that must not be cached."""
    if weights is None:
        return None  # random weights: a new network every time
    if isinstance(weights, (str, os.PathLike)) and Path(weights).exists():
        return _file_id(weights)
    if isinstance(weights, str):
        return weights  # a named source, e.g. "imagenet"
    return None


class FeatureCache:
    """Pooled backbone features by model, weights, input spec and image files."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()

    def _entry(
        self, model: str, weights: Any, spec: InputSpec, files: Sequence[str]
    ) -> tuple[Path, list[list[Any]]] | None:
        weights_id = _weights_id(weights)
        if weights_id is None or not files:
            return None
        try:
            ids = sorted(_file_id(f) for f in files)
        except OSError:  # a file went away
            return None
        key = json.dumps(
            [_VERSION, model, weights_id, spec.to_dict(), ids], sort_keys=True, default=str
        )
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.root / f"{name}.npz", ids

    def put(
        self,
        model: str,
        weights: Any,
        spec: InputSpec,
        files: Sequence[str],
        features: np.ndarray,
    ) -> Path | None:
        """Store `features` (one row per file of `files`, in that order); returns the
        entry's path, or None when these weights are not cached (random ones)."""
        entry = self._entry(model, weights, spec, files)
        if entry is None:
            return None
        if len(features) != len(files):
            raise ValueError(f"{len(features)} feature rows for {len(files)} files")
        path, _ = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        paths = np.asarray([str(Path(f).resolve()) for f in files])
        partial = path.with_suffix(f".partial-{os.getpid()}.npz")
        np.savez(partial, paths=paths, features=np.asarray(features, dtype=np.float32))
        os.replace(partial, path)  # whole or not at all
        return path

    def get(
        self, model: str, weights: Any, spec: InputSpec, files: Sequence[str]
    ) -> np.ndarray | None:
        """The stored rows for `files` in the order given, or None when any is missing
        or anything that shaped them changed."""
        entry = self._entry(model, weights, spec, files)
        if entry is None or not entry[0].exists():
            return None
        try:
            with np.load(entry[0]) as stored:
                row = {p: i for i, p in enumerate(stored["paths"].tolist())}
                features = stored["features"]
                picked = [row[str(Path(f).resolve())] for f in files]
                return np.asarray(features[picked])
        except (OSError, KeyError, ValueError):  # an unreadable or foreign entry
            return None
