"""Pretrained weights from every source a user has, loaded by layer name.

Sources: `"imagenet"` (Keras' download cache, hash checked, fails fast offline), a
Keras weights file (legacy `.h5` keyed by layer name, or Keras 3 `.weights.h5` keyed
by position), a TensorFlow.js layers-format folder, or `None`. No function here ever
deletes or rewrites a user's file.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from zoo_transfer.errors import (
    WeightsCorruptError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from zoo_transfer.registry import Card, WeightsFile

# Keras 2 / TF.js variable names that Keras 3 calls otherwise.
_SYNONYMS = {"depthwise_kernel": "kernel"}

NamedWeights = dict[str, list[tuple[str, np.ndarray]]]  # layer -> [(var, array)]


# ------------------------------------------------------------------ ImageNet cache
def keras_cache_dir() -> Path:
    """Keras' cache root: `$KERAS_HOME` (read now, not at import), else Keras' default."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.path.expanduser(os.environ["KERAS_HOME"]))
    from keras.src.backend import config

    return Path(os.path.expanduser(config.keras_home()))


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_mismatch(path: Path, expected_hash: str | None) -> str | None:
    """`"fails its sha256 check (expected X, got Y)"`, or None when it matches (or no hash)."""
    if not expected_hash:
        return None
    algorithm = "sha256" if len(expected_hash) == 64 else "md5"
    actual = file_digest(path, algorithm)
    if actual == expected_hash:
        return None
    return f"fails its {algorithm} check (expected {expected_hash}, got {actual})"


def verify_file(path: Path, expected_hash: str | None) -> None:
    """Raise `WeightsCorruptError` when `path` fails its hash or is not a readable HDF5."""
    problem = hash_mismatch(path, expected_hash)
    if problem:
        raise WeightsCorruptError(
            f"{path} {problem}: the file is truncated or corrupt. It was left in place; move "
            "it aside and run `zoo-transfer fetch` again, or pass a good file as `weights=`."
        )
    _check_h5(path)


def _check_h5(path: Path) -> None:
    import h5py

    try:
        with h5py.File(path, "r"):
            pass
    except OSError as exc:
        raise WeightsCorruptError(
            f"{path} is not a readable HDF5 weights file ({exc}); it may be truncated. "
            "The file was left in place."
        ) from None


def _reachable(url: str, timeout: float = 4.0) -> bool:
    """Whether a TCP connection to `url`'s host opens within `timeout` seconds.

    DNS lookups can hang far longer than a socket timeout on a closed network, so the
    probe runs in a daemon thread and is abandoned when the time is up.
    """
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(parsed.path).exists()
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def imagenet_weights_file(
    card: Card, include_top: bool, *, download: bool = True, cache_root: Path | None = None
) -> Path:
    """Path of `card`'s Keras ImageNet weights in the cache, downloading if possible.

    `cache_root` defaults to Keras' (`$KERAS_HOME` or `~/.keras`). Raises
    `WeightsUnavailableError` (within seconds when offline) or `WeightsCorruptError` for
    a cached file that fails its hash; that file is left in place.
    """
    root = Path(cache_root) if cache_root is not None else keras_cache_dir()
    w: WeightsFile | None = card.weights_top if include_top else card.weights_no_top
    if w is None:
        raise WeightsUnavailableError(
            f"{card.name} has no ImageNet weights {'with' if include_top else 'without'} "
            "its top. Pass a weights file or weights=None."
        )
    if w.packaged:  # shipped inside an installed package: used in place, never cached
        local = _local_source(w.location)
        _check_local_source(card, local, w.hash)
        return local
    cached = root / w.cache_subdir / w.file
    if cached.exists():
        verify_file(cached, w.hash)
        return cached
    local = _local_source(w.location)
    if local is not None:  # file:// (e.g. weights shipped in a package): checked, then cached
        _check_local_source(card, local, w.hash)
    how = (
        f"Run `zoo-transfer fetch {card.name}` on a connected machine and copy "
        f"{root / w.cache_subdir} here (or set KERAS_HOME), or pass a local "
        "weights file as `weights=PATH`."
    )
    if not download or not _reachable(w.location):
        raise WeightsUnavailableError(
            f"ImageNet weights for {card.name} are not cached ({cached} does not exist) and "
            f"{urlparse(w.location).hostname} cannot be reached. {how}"
        )
    import keras

    root.mkdir(parents=True, exist_ok=True)  # else Keras falls back to /tmp/.keras
    try:
        path = keras.utils.get_file(
            w.file, w.location, file_hash=w.hash, cache_subdir=w.cache_subdir, cache_dir=str(root)
        )
    except Exception as exc:
        raise WeightsUnavailableError(f"Downloading {w.url} failed: {exc}. {how}") from exc
    return Path(path)


def _local_source(url: str) -> Path | None:
    """The local path of a `file://` URL, else None."""
    from urllib.request import url2pathname

    parsed = urlparse(url)
    return Path(url2pathname(parsed.path)) if parsed.scheme == "file" else None


def _check_local_source(card: Card, path: Path, expected_hash: str | None) -> None:
    """Refuse a missing or modified local source (a packaged file, or a file:// URL)."""
    if not path.is_file():
        raise WeightsUnavailableError(
            f"The weights of {card.name} should be at {path}, which does not exist. "
            "Reinstall the package that ships them, or pass a weights file as `weights=PATH`."
        )
    problem = hash_mismatch(path, expected_hash)
    if problem:
        raise WeightsCorruptError(
            f"{path}, the source of {card.name}'s weights, {problem}: it was modified or "
            "truncated. It was left in place; reinstall the package that ships it, or pass "
            "a good file as `weights=`."
        )


# ------------------------------------------------------------------ by-name loading
def read_legacy_h5(path: Path) -> NamedWeights | None:
    """Weights of a Keras 2 style `.h5` (layer-name keyed), or None for other layouts."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in root.attrs:
                return None
            out: NamedWeights = {}
            for raw in root.attrs["layer_names"]:
                layer = raw.decode() if isinstance(raw, bytes) else str(raw)
                group = root[layer]
                names = [
                    n.decode() if isinstance(n, bytes) else str(n)
                    for n in group.attrs.get("weight_names", [])
                ]
                if names:
                    out[layer] = [(_var_key(n), np.asarray(group[n])) for n in names]
            return out
    except OSError as exc:
        raise WeightsCorruptError(f"{path} is not a readable HDF5 file ({exc}).") from None


def _var_key(name: str) -> str:
    """`conv1/kernel:0` or `model/conv1/kernel` -> `kernel`."""
    key = name.split("/")[-1].split(":")[0]
    return _SYNONYMS.get(key, key)


def assign_by_name(
    model: Any, weights: NamedWeights, *, source: str, require_all: bool = True
) -> list[str]:
    """Copy `weights` into the layers of `model` (nested models included) by layer name.

    `model` may also be a list of layers.

    Variables are matched by name, else by order within the layer; every shape is
    checked. Layers of the file that the model lacks (an old head) are ignored. Returns
    the names of the layers loaded. Raises `WeightsMismatchError` listing the layers
    that are missing from the file or whose shapes differ.
    """
    missing, mismatched, loaded = [], [], []
    from .stages import weighted_layers

    layers = model if isinstance(model, list) else weighted_layers(model)
    label = getattr(model, "name", "the given layers")
    for layer in layers:
        variables = layer.weights
        entry = weights.get(layer.name)
        if entry is None:  # Keras' auto names shift between builds: normalization_3
            base = re.sub(r"_\d+$", "", layer.name)
            same = [k for k in weights if re.sub(r"_\d+$", "", k) == base]
            entry = weights[same[0]] if len(same) == 1 else None
        if entry is None:
            missing.append(layer.name)
            continue
        arrays = _match_variables(variables, entry)
        if arrays is None:
            mismatched.append(
                f"{layer.name}: model {[tuple(v.shape) for v in variables]} vs file "
                f"{[tuple(a.shape) for _, a in entry]}"
            )
            continue
        for v, a in zip(variables, arrays, strict=True):
            v.assign(a.astype(v.dtype) if hasattr(a, "astype") else a)
        loaded.append(layer.name)
    problems = []
    if mismatched:
        problems.append("shapes differ: " + "; ".join(mismatched[:8]))
    if missing and require_all:
        problems.append("not in the file: " + ", ".join(missing[:12]))
    if problems or not loaded:
        raise WeightsMismatchError(
            f"{source} does not fit {label!r}: "
            + (" | ".join(problems) or "no layer name matches")
            + f" ({len(loaded)} layers matched). Is it a file for another architecture "
            "or width? Pick the card that wrote it."
        )
    return loaded


def _match_variables(variables: list[Any], entry: list[tuple[str, np.ndarray]]) -> Any:
    if len(variables) != len(entry):
        return None
    by_name = dict(entry)
    names = [_SYNONYMS.get(v.name, v.name) for v in variables]
    if len(by_name) == len(entry) and all(n in by_name for n in names):
        arrays = [by_name[n] for n in names]
    else:
        arrays = [a for _, a in entry]
    if any(tuple(v.shape) != tuple(a.shape) for v, a in zip(variables, arrays, strict=True)):
        return None
    return arrays
