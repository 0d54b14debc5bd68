"""The model a run trains: a zoo name (`zoo-transfer list`) or a local keras-hub preset
folder (`config.json`, `model.weights.h5`, `image_converter.json`).

A folder gets a card measured from the backbone it holds (`zoo_transfer.card_from_preset`),
registered for this process under the folder's name (`my_dinov2` -> `my_dinov2.local`),
and its own weights are the pretrained ones. `config.json` keeps the folder's path, so
`--resume` in a new process measures the same card again.

```shell
zoo-transfer train presets/my_dinov2 --data photos/ --unfreeze 3:block10
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_CARDS: dict[str, str] = {}  # resolved folder -> the card name registered for it


def is_model_folder(model: str) -> bool:
    """Whether MODEL names a folder (a preset) rather than a zoo name."""
    return Path(model).expanduser().is_dir()


def model_card(model: str) -> Any:
    """The card for MODEL: the registry's, or one measured from a preset folder.

    Raises `UnknownModelError` (a name nothing answers to, with close matches),
    `BuildArgumentError` (a folder that is not a keras-hub preset, naming what is
    missing) or `MissingExtraError` (a folder without keras-hub installed).
    """
    from zoo_transfer.registry import get_card

    if not is_model_folder(model):
        return get_card(model)
    folder = Path(model).expanduser().resolve()
    name = _CARDS.get(str(folder))
    if name is None:
        from zoo_transfer.recipes import card_from_preset
        from zoo_transfer.registry import register_model

        card = card_from_preset(folder)
        register_model(card, override=True)
        name = _CARDS[str(folder)] = card.name
    return get_card(name)
