"""`zoo-transfer list`, `info`, `validate` and `fetch`: the registry from the shell.

`list`, `info` and `validate` read the registry only, so they start fast and never
import TensorFlow or Keras.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from zoo_transfer.cli.common import fail as _fail
from zoo_transfer.errors import UnknownModelError, ZooTransferError
from zoo_transfer.registry import REGISTRY, Card, card_from_dict, load_family_file

FORMAT = click.Choice(["table", "json"])


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _summary(card: Card) -> dict[str, Any]:
    return {
        "name": card.name,
        "arch": card.arch,
        "tag": card.tag,
        "family": card.family,
        "zoo": card.zoo,
        "constructor": card.constructor,
        "input_size": list(card.input_size),
        "params": card.params,
        "params_no_top": card.params_no_top,
        "top1": card.top1,
        "top5": card.top5,
    }


def _qualified(constructor: str) -> str:
    """`ResNet50` -> `keras.applications.ResNet50`; a dotted path stays as written."""
    if ":" in constructor or "." in constructor:
        return constructor
    return f"keras.applications.{constructor}"


@click.command("list")
@click.argument("pattern", required=False)
@click.option("--family", help="Only models of this family, e.g. efficientnet.")
@click.option(
    "--format",
    "fmt",
    type=FORMAT,
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)
@click.option(
    "--zoo",
    type=click.Choice(["all", "applications", "hub"]),
    default="all",
    show_default=True,
    help="applications: keras.applications (and the package's own); hub: keras-hub presets "
    '(build them after `pip install "zoo-transfer[hub]"`).',
)
def list_cmd(pattern: str | None, family: str | None, fmt: str, zoo: str) -> None:
    """List registered models, optionally matching PATTERN (e.g. 'resnet*')."""
    try:
        cards = [REGISTRY.get(n) for n in REGISTRY.names(pattern, family)]
    except ZooTransferError as exc:
        _fail(str(exc), 1)
    cards = [c for c in cards if zoo in ("all", c.zoo)]
    if fmt == "json":
        click.echo(json.dumps([_summary(c) for c in cards], indent=2))
        return
    if not cards:
        known = ", ".join(REGISTRY.families())
        _fail(
            f"no model matches pattern={pattern!r} family={family!r} zoo={zoo!r}. "
            f"Families: {known}",
            1,
        )
    width = max(34, *(len(c.name) + 2 for c in cards))
    click.echo(f"{'NAME':<{width}}{'ZOO':<6}{'FAMILY':<21}{'INPUT':>9}{'PARAMS':>9}{'TOP-1':>7}")
    for c in cards:
        size = f"{c.input_size[0]}x{c.input_size[1]}"
        click.echo(
            f"{c.name:<{width}}{'hub' if c.zoo == 'hub' else 'keras':<6}{c.family:<21}"
            f"{size:>9}{_millions(c.params):>9}{_pct(c.top1):>7}"
        )
    click.echo(f"{len(cards)} models")


@click.command("info")
@click.argument("name")
@click.option("--format", "fmt", type=FORMAT, default="table", show_default=True)
def info_cmd(name: str, fmt: str) -> None:
    """Show every field of NAME's card and a table of its stages."""
    try:
        card = REGISTRY.get(name)
    except UnknownModelError as exc:
        _fail(str(exc), 2)
    except ZooTransferError as exc:
        _fail(str(exc), 1)
    if fmt == "json":
        d = card.to_dict()
        d["preprocessing"]["mean_rgb01"] = list(card.preprocessing.mean_rgb01)
        d["preprocessing"]["std_rgb01"] = list(card.preprocessing.std_rgb01)
        click.echo(json.dumps(d, indent=2))
        return
    p = card.preprocessing
    kw = ", ".join(f"{k}={v!r}" for k, v in card.kwargs.items())
    own_pooling = card.feature_layer != card.stages[-1].layer  # SigLIP's attention pooling
    rows = [
        ("name", card.name),
        ("family", card.family),
        ("aliases", ", ".join(card.aliases) or "-"),
        ("constructor", f"{_qualified(card.constructor)}({kw})"),
        (
            "input size",
            "x".join(map(str, card.input_size))
            + f" (smallest {card.min_input_size[0]}x{card.min_input_size[1]})",
        ),
        (
            "preprocessing",
            f"mode={p.mode} order={p.channel_order} scale={p.scale:.6g} "
            f"mean={_fmt3(p.mean)} std={_fmt3(p.std)}",
        ),
        ("  as RGB 0-1", f"mean={_fmt3(p.mean_rgb01)} std={_fmt3(p.std_rgb01)}"),
        ("  resize", f"{p.interpolation}, crop_pct={p.crop_pct}"),
        (
            "  keras function",
            f"keras.applications.{card.preprocess_module}.preprocess_input"
            if card.preprocess_module
            else "-",
        ),
        ("zoo", "keras-hub preset " + card.preset if card.preset else "keras.applications"),
        (
            "tokens",
            f"{card.tokens.prefix} before the patches, pooled by {card.tokens.pool}"
            + (" at a block" if own_pooling else "")
            if card.tokens
            else "-",
        ),
        (
            "feature layer",
            card.feature_layer
            + (f" (the model's own pooling of {card.stages[-1].name})" if own_pooling else ""),
        ),
        ("head layers", ", ".join(card.head_layers) or "-"),
        ("classes", str(card.num_classes) if card.num_classes else "- (no classifier)"),
        ("params", f"{card.params:,} ({card.params_no_top:,} without top)"),
        (
            "top-1 / top-5",
            f"{_pct(card.top1)} / {_pct(card.top5)}"
            + (f"  ({card.accuracy_source})" if card.accuracy_source else ""),
        ),
        ("license", card.license),
    ]
    for label, w in (("weights", card.weights_top), ("weights (no top)", card.weights_no_top)):
        if w is not None:
            rows.append((label, f"{w.file}  hash={w.hash or '-'}"))
            rows.append(("", w.url))
    for label, value in rows:
        click.echo(f"{label:<18}{value}")
    click.echo("")
    click.echo(
        f"{'STAGE':<8}{'LAYER':<46}{'STRIDE':>7}  {'SHAPE @ ' + str(card.input_size[0]):<16}"
    )
    for s in card.stages:
        shape = "x".join(map(str, s.shape))
        click.echo(f"{s.name:<8}{s.layer:<46}{s.stride:>7}  {shape:<16}")


def _fmt3(v: Any) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"


@click.command("validate")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def validate_cmd(path: Path) -> None:
    """Check a card file (one card, or a family file with "cards") against the schema,
    and that each card's constructor can be found."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _fail(f"{path}: not a card file (not UTF-8 text). Expected a JSON card or family file.", 1)
    try:
        data = json.loads(text)
        if isinstance(data, dict) and "cards" in data:
            cards = load_family_file(text, str(path))
        else:
            cards = [card_from_dict(data, str(path))]
    except json.JSONDecodeError as exc:
        _fail(f"{path}: invalid JSON: {exc}", 1)
    except ZooTransferError as exc:
        _fail(str(exc), 1)
    from zoo_transfer.recipes import constructor  # imports the card's module (and Keras)

    for card in cards:
        try:
            constructor(card, source=str(path))
        except ZooTransferError as exc:
            _fail(str(exc), 1)
    click.echo(f"{path}: {len(cards)} valid card(s): " + ", ".join(c.name for c in cards))


@click.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--to",
    "to",
    type=click.Path(file_okay=False, path_type=Path),
    help="Cache root to fill (default: $KERAS_HOME or ~/.keras); copy it to the "
    "offline machine and point KERAS_HOME at it. For a keras-hub card: the folder that "
    "gets DIR/<preset>/, a preset folder to pass as weights=.",
)
def fetch_cmd(names: tuple[str, ...], to: Path | None) -> None:
    """Download NAMES' ImageNet weights (with and without top) into the Keras cache, or
    a keras-hub card's preset (into kagglehub's cache, and DIR/<preset>/ with --to)."""
    from zoo_transfer.recipes import imagenet_weights_file

    failed = 0
    for name in names:
        try:
            card = REGISTRY.get(name)
        except UnknownModelError as exc:
            _fail(str(exc), 2)
        if card.zoo == "hub":
            from zoo_transfer.recipes import fetch_preset

            try:
                path = fetch_preset(card, to)
                click.echo(f"{card.name}: {path} (keras-hub preset: pass weights={str(path)!r})")
            except ZooTransferError as exc:
                click.echo(f"Error: {exc}", err=True)
                failed += 1
            continue
        for include_top in (True, False):
            try:
                path = imagenet_weights_file(card, include_top, cache_root=to)
                click.echo(f"{card.name}: {path} (hash ok)")
            except ZooTransferError as exc:
                click.echo(f"Error: {exc}", err=True)
                failed += 1
    if failed:
        sys.exit(1)
