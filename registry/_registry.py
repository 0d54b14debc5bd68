"""The registry: looks cards up by name, alias or `arch.tag`, and takes new ones.

Built-in cards live in `cards/<family>.json` beside this module. Third-party packages
add cards through the entry-point group `zoo_transfer.models`. Loading is lazy and
happens once per process; nothing here imports Keras or TensorFlow.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
import threading
import warnings
from collections.abc import Iterable, Mapping
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from zoo_transfer.errors import (
    CardValidationError,
    DuplicateModelError,
    PluginWarning,
    UnknownModelError,
)

from ._card import Card, card_from_dict

ENTRY_POINT_GROUP = "zoo_transfer.models"
_FAMILY_KEYS = {"family", "defaults", "cards"}


def _norm(name: str) -> str:
    """Lookup key that ignores case and punctuation: `ResNet50` == `resnet_50`."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def load_family_file(text: str, source: str) -> list[Card]:
    """Parse one family file: `{"family": ..., "defaults": {...}, "cards": [...]}`.

    Each card is `defaults` updated by the card's own fields, then validated.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardValidationError(source, None, "<file>", f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CardValidationError(source, None, "<file>", "expected a JSON object")
    unknown = set(data) - _FAMILY_KEYS
    if unknown:
        raise CardValidationError(source, None, sorted(unknown)[0], "unknown top-level field")
    defaults = data.get("defaults", {})
    cards = data.get("cards")
    if not isinstance(defaults, dict):
        raise CardValidationError(source, None, "defaults", "expected an object")
    if not isinstance(cards, list) or not cards:
        raise CardValidationError(source, None, "cards", "expected a non-empty list")
    out = []
    for i, raw in enumerate(cards):
        if not isinstance(raw, dict):
            raise CardValidationError(source, None, f"cards[{i}]", "expected an object")
        merged = {"family": data.get("family"), **defaults, **raw}
        out.append(card_from_dict(merged, source))
    return out


class Registry:
    """A set of cards with name resolution. The package keeps one: `REGISTRY`."""

    def __init__(self, *, builtin: bool = True, plugins: bool = True, cards_dir: str | None = None):
        self._cards_dir = cards_dir
        self._cards: dict[str, Card] = {}
        self._default_tag: dict[str, str] = {}
        self._keys: dict[str, str] = {}  # normalised arch or alias -> arch
        self._loaded = False
        self._want_builtin, self._want_plugins = builtin, plugins
        self._lock = threading.RLock()
        self.plugin_errors: dict[str, str] = {}

    # ----------------------------------------------------------------- loading
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            if self._want_builtin:
                self._load_builtin()
            if self._want_plugins:
                self._load_plugins()

    def _load_builtin(self) -> None:
        if self._cards_dir is not None:
            folder, label = Path(self._cards_dir), str(self._cards_dir)
        else:
            folder, label = resources.files(__package__).joinpath("cards"), "registry/cards"
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            if entry.name.endswith(".json"):
                source = f"{label}/{entry.name}"
                for card in load_family_file(entry.read_text(encoding="utf-8"), source):
                    self._add(card, override=False)

    def _load_plugins(self) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                cards = list(_plugin_cards(ep.load(), f"plugin {ep.name!r} ({ep.value})"))
                for card in cards:
                    self._add(card, override=False)
            except Exception as exc:  # a broken plugin must not break the registry
                self.plugin_errors[ep.name] = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"zoo-transfer: the model plugin {ep.name!r} ({ep.value}) failed to "
                    f"load and its models are unavailable: {type(exc).__name__}: {exc}. "
                    "Fix or uninstall the package that provides it.",
                    PluginWarning,
                    stacklevel=3,
                )

    def _add(self, card: Card, *, override: bool) -> None:
        if card.name in self._cards and not override:
            raise DuplicateModelError(card.name)
        key = _norm(card.arch)
        owner = self._keys.get(key)
        if owner is not None and owner != card.arch and not override:
            raise DuplicateModelError(card.arch)
        taken = [a for a in card.aliases if self._keys.get(_norm(a), card.arch) != card.arch]
        if taken and not override:
            raise DuplicateModelError(
                taken[0],
                f"The alias {taken[0]!r} of {card.name!r} already names the model "
                f"{self._keys[_norm(taken[0])]!r}. Choose another alias, or pass "
                "`override=True` to take it over.",
            )
        self._cards[card.name] = card
        self._default_tag.setdefault(card.arch, card.tag)
        self._keys[key] = card.arch
        for alias in card.aliases:
            self._keys[_norm(alias)] = card.arch

    # ----------------------------------------------------------------- public
    def register(self, card: Card | Mapping[str, Any], *, override: bool = False) -> Card:
        self._ensure_loaded()
        if not isinstance(card, Card):
            card = card_from_dict(card, source="register_model()")
        with self._lock:
            self._add(card, override=override)
        return card

    def resolve(self, name: str) -> str:
        """The full `arch.tag` name that `name` refers to."""
        self._ensure_loaded()
        if not isinstance(name, str) or not name.strip():
            raise UnknownModelError(str(name), ())
        name = name.strip()
        if name in self._cards:
            return name
        arch_part, _, tag = name.partition(".")
        arch = self._keys.get(_norm(arch_part))
        if arch is not None:
            full = f"{arch}.{tag or self._default_tag[arch]}"
            if full in self._cards:
                return full
        raise UnknownModelError(name, self.suggest(name))

    def suggest(self, name: str, n: int = 5) -> list[str]:
        candidates = {_norm(c): c for c in self._cards}
        candidates.update({_norm(a): a for a in self._default_tag})
        hits = difflib.get_close_matches(_norm(name), list(candidates), n=n, cutoff=0.6)
        return [candidates[h] for h in hits]

    def get(self, name: str) -> Card:
        return self._cards[self.resolve(name)]

    def names(self, pattern: str | None = None, family: str | None = None) -> list[str]:
        self._ensure_loaded()
        out = []
        for full, card in self._cards.items():
            if family is not None and card.family != family.lower():
                continue
            if pattern and not (
                fnmatch.fnmatch(full, pattern.lower())
                or fnmatch.fnmatch(card.arch, pattern.lower())
            ):
                continue
            out.append(full)
        return sorted(out)

    def families(self) -> list[str]:
        self._ensure_loaded()
        return sorted({c.family for c in self._cards.values()})

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._cards)


def _plugin_cards(obj: Any, source: str) -> Iterable[Card]:
    """Accept what a plugin entry point gives: a card, a dict, a list, or a factory."""
    if callable(obj) and not isinstance(obj, Card):
        obj = obj()
    if isinstance(obj, (Card, Mapping)):
        obj = [obj]
    for item in obj:
        yield item if isinstance(item, Card) else card_from_dict(item, source)


REGISTRY = Registry()


def list_models(pattern: str | None = None, family: str | None = None) -> list[str]:
    """Names (`arch.tag`) of the registered models, sorted.

    Args:
        pattern: `fnmatch` pattern matched against the full name or the arch,
            e.g. `"resnet*"` or `"mobilenet_v2.a035_*"`. `None` lists all.
        family: only models of this family (`"efficientnet"`, `"mobilenet_v2"`).

    ```python
    >>> zoo_transfer.list_models("resnet5*")
    ['resnet50.imagenet', 'resnet50_v2.imagenet']
    ```
    """
    return REGISTRY.names(pattern, family)


def get_card(name: str) -> Card:
    """The card for `name`: `arch.tag`, an arch (its default tag) or an alias.

    Raises `UnknownModelError` with close matches when nothing answers to `name`.

    ```python
    card = zoo_transfer.get_card("ResNet50")   # -> resnet50.imagenet
    ```
    """
    return REGISTRY.get(name)


def register_model(card: Card | Mapping[str, Any], override: bool = False) -> Card:
    """Add a user's card (a `Card` or a dict in the card schema) to the registry.

    A name that is already registered raises `DuplicateModelError` unless
    `override=True`. A malformed dict raises `CardValidationError`.
    """
    return REGISTRY.register(card, override=override)
