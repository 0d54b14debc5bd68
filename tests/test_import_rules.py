"""The packages talk through public names: the import rules, checked by reading the source.

Every import counts, at module level or inside a function (a lazy import still ties
two modules together):
- no module imports another package's private (`_name`) module;
- the registry, the leaf, imports nothing of the project but `zoo_transfer.errors`;
- no two modules import each other, directly or round a circle;
- the cards name public paths for their constructors.
"""

from __future__ import annotations

import ast
import configparser
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {  # installed name -> folder (setup.cfg's package_dir)
    "zoo_transfer": ROOT / "zoo_transfer",
    "zoo_transfer.registry": ROOT / "registry",
    "zoo_transfer.recipes": ROOT / "recipes",
    # subpackages are packages of their own: their `_private` modules are theirs alone
    "zoo_transfer.cli": ROOT / "zoo_transfer" / "cli",
    "zoo_transfer.data": ROOT / "zoo_transfer" / "data",
    "zoo_transfer.exports": ROOT / "zoo_transfer" / "exports",
    "zoo_transfer.guards": ROOT / "zoo_transfer" / "guards",
    "zoo_transfer.job": ROOT / "zoo_transfer" / "job",
    "zoo_transfer.report": ROOT / "zoo_transfer" / "report",
}


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = (path, path.name == "__init__.py")
    return found


def _imports(name: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """The project modules that module `name` imports, anywhere in its source."""
    here = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        out |= {c for c in candidates if c in known and c != name}
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, *where, set(modules)) for name, where in modules.items()}


def _package(module: str) -> str:
    return max((p for p in PACKAGES if module == p or module.startswith(p + ".")), key=len)


def test_the_scan_sees_the_project():
    graph = _graph()
    assert {
        "zoo_transfer.job",
        "zoo_transfer.recipes.stages",
        "zoo_transfer.registry._card",
    } <= set(graph)
    assert "zoo_transfer.recipes.stages" in graph["zoo_transfer.callbacks"]  # a lazy import
    assert "zoo_transfer.recipes._build" in graph["zoo_transfer.recipes"]  # a relative one


def test_no_module_imports_another_packages_private_module():
    graph = _graph()
    crossings = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if _package(a) != _package(b) and b.rpartition(".")[2].startswith("_")
    )
    assert crossings == [], "export these names from the package's __init__ instead"


def test_the_registry_imports_nothing_of_the_project_but_the_errors():
    graph = _graph()
    reaching_out = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        if _package(a) == "zoo_transfer.registry"
        for b in targets
        if _package(b) != "zoo_transfer.registry" and b != "zoo_transfer.errors"
    )
    assert reaching_out == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_no_import_cycles():
    assert _cycles(_graph()) == []
    # and the check finds one when there is one
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_cards_name_public_constructor_paths():
    private = []
    for path in sorted((ROOT / "registry" / "cards").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for card in data.get("cards", [data]):
            ctor = card.get("constructor", "")
            if any(part.startswith("_") for part in ctor.replace(":", ".").split(".")):
                private.append(f"{path.name}: {ctor}")
    assert private == []


def test_every_package_folder_is_installed():
    """setup.cfg lists packages by name: a folder left out would be missing from a wheel."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    folders = {
        ".".join([package, *init.parent.relative_to(folder).parts])
        for package, folder in PACKAGES.items()
        for init in folder.rglob("__init__.py")
    }
    assert folders - listed == set(), "add these to setup.cfg's `packages`"
    assert set(PACKAGES) <= listed
