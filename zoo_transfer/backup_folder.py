"""The backup folder's layout, read without Keras: which epochs' backups it holds.

`zoo_transfer.backup` writes and loads the backups; this module only names and lists
them, so the out-folder checks (`--resume` with nothing left to train) run before
TensorFlow is imported.

```python
finished_epochs("run/backup")  # 3 when epoch-0003/ is the newest backup; None if none
```
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

KEEP = 2  # backups kept: the newest, and the one before it in case the newest is damaged
WEIGHTS = "model.weights.h5"
STATE = "state.json"
NAME = re.compile(r"^epoch-(\d+)$")
LEGACY_WEIGHTS, LEGACY_STATE = "latest.weights.h5", "training_metadata.json"


@dataclass(frozen=True)
class Backup:
    epoch: int  # epochs finished when it was written
    path: Path  # the folder (or, for the Keras layout, the weights file) to name
    weights: Path
    state: Path


def backups(folder: Path) -> list[Backup]:
    """The backups in `folder`, newest first (by the epoch in their name)."""
    found = []
    if folder.is_dir():
        for entry in folder.iterdir():
            match = NAME.match(entry.name)
            if match and entry.is_dir():
                found.append(Backup(int(match.group(1)), entry, entry / WEIGHTS, entry / STATE))
        legacy = folder / LEGACY_WEIGHTS
        if legacy.exists():
            try:
                epoch = int(json.loads((folder / LEGACY_STATE).read_text())["epoch"])
            except (OSError, ValueError, KeyError, TypeError):
                epoch = 0
            found.append(Backup(epoch, legacy, legacy, folder / LEGACY_STATE))
    return sorted(found, key=lambda b: b.epoch, reverse=True)


def finished_epochs(folder: str | os.PathLike) -> int | None:
    """Epochs finished by the newest backup in `folder` (not loaded), or None if none."""
    found = backups(Path(folder))
    return found[0].epoch if found else None
