"""LoRA adapters on their own: the weights a `build(..., lora_rank=r)` model trains.

With LoRA the backbone stays frozen, so what fine-tuning learned is the low-rank updates
and the new head: a few thousand to a few hundred thousand numbers. `save_lora` writes
those (every trainable variable, in order, with its path and shape) to one `.npz` file;
`load_lora` puts them back into a model built the same way, checking count and shapes.

```python
model = zoo_transfer.build("dinov2_small", num_classes=5, lora_rank=8, weights=preset)
model.fit(...)
zoo_transfer.save_lora(model, "flowers.lora.npz")        # KBs, not the whole backbone
fresh = zoo_transfer.build("dinov2_small", num_classes=5, lora_rank=8, weights=preset)
zoo_transfer.load_lora(fresh, "flowers.lora.npz")
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.errors import WeightsMismatchError

_KEY = "{index:05d}|{path}"


def save_lora(model: Any, path: str | Path) -> Path:
    """Write `model`'s trainable weights (LoRA and head) to `path` (`.npz`); returns it.

    Refuses a model without LoRA, whose trainable weights would not be an adapter.
    """
    variables = list(model.trainable_variables)
    if not any("lora" in v.path for v in variables):
        raise WeightsMismatchError(
            f"{model.name} has no LoRA weights. Build it with lora_rank=R (a keras-hub "
            "transformer card), or save the whole model with model.save()."
        )
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays = {
        _KEY.format(index=i, path=v.path): np.asarray(v.numpy()) for i, v in enumerate(variables)
    }
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)  # never a half-written adapter under the real name
    return path


def load_lora(model: Any, path: str | Path) -> None:
    """Load an adapter from `save_lora` into `model`, built with the same card, classes,
    head and `lora_rank`; `WeightsMismatchError` naming the first difference otherwise."""
    with np.load(Path(path)) as data:
        saved = [(k.split("|", 1)[1], data[k]) for k in sorted(data.files)]
    variables = list(model.trainable_variables)
    if len(saved) != len(variables):
        raise WeightsMismatchError(
            f"{path} holds {len(saved)} LoRA and head weights, {model.name} trains "
            f"{len(variables)}: build it as the adapter's model was (card, num_classes, "
            "head, lora_rank)."
        )
    for (name, value), v in zip(saved, variables, strict=True):
        if tuple(value.shape) != tuple(v.shape):
            raise WeightsMismatchError(
                f"{path}: {name} has shape {value.shape}, {model.name}'s {v.path} "
                f"{tuple(v.shape)}. Build the model with the adapter's lora_rank and head."
            )
    for (_, value), v in zip(saved, variables, strict=True):
        v.assign(value)
