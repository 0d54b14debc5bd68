"""The floors in setup.cfg are real: the installed packages meet them; Keras' has what we use."""

from __future__ import annotations

import configparser
import re
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _floors() -> dict[str, tuple[int, ...]]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    floors = {}
    for line in config["options"]["install_requires"].strip().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", line.strip())
        if match:
            floors[match[1]] = tuple(int(p) for p in match[2].split("."))
    return floors


def _installed(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version(name))[:3])


def test_installed_packages_meet_the_floors():
    floors = _floors()
    assert {"keras", "tensorflow", "click", "numpy"} <= set(floors)
    for name, floor in floors.items():
        assert _installed(name)[: len(floor)] >= floor, f"{name} {version(name)} < {floor}"


def test_keras_floor_is_where_multioptimizer_first_ships():
    import keras

    # GroupedOptimizer subclasses keras.optimizers.MultiOptimizer, new in Keras 3.15
    assert _floors()["keras"] >= (3, 15)
    assert hasattr(keras.optimizers, "MultiOptimizer")
