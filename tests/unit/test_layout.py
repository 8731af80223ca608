"""The import direction `anneal` <- `trainers` <- `cluster`, and no import circles.

Every module's syntax tree is read, so an import inside a function, or under TYPE_CHECKING,
counts as much as one at the top: each runs in some process, and each ties the two modules.
A failure names the file, the line and the import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.unit.helpers import ROOT

PACKAGES = ("anneal", "trainers", "cluster")
# What each package must never import: `anneal` is the light client, `trainers` knows no cluster.
FORBIDDEN = {"anneal": ("cluster", "trainers"), "trainers": ("cluster",), "cluster": ()}
# Inside `cluster`, what each folder (or the shared module) may import of the others: the code
# of one process never reaches into another's, only into the shared code below (ARCHITECTURE.md).
CLUSTER_MAY_IMPORT: dict[str, set[str]] = {
    "environment": set(),
    "store": set(),
    "tracking": set(),
    "worker": set(),
    "trial": {"worker"},
    "serving": {"store", "tracking"},
    "driver": {"environment", "store", "tracking", "trial", "serving"},
    "server": {"environment", "store", "tracking", "trial", "serving"},
    "local": {"environment", "store", "server", "driver"},
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module it imports (a package's `__init__` for a name the package defines)
    where: str  # path:line


def module_files(root: Path) -> dict[str, Path]:
    """Every module of the three packages under `root`, by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path], root: Path) -> Iterator[Import]:
    """Every import statement anywhere in the module, each resolved to the module it loads."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, where)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(name, submodule if submodule in modules else base, where)


def all_imports(root: Path) -> list[Import]:
    modules = module_files(root)
    return [found for name, path in modules.items() for found in imports_of(name, path, modules, root)]


def direction_violations(root: Path) -> list[str]:
    """`path:line: a imports b`, for each import against the direction."""
    wrong = []
    for found in all_imports(root):
        top, target_top = found.source.split(".")[0], found.target.split(".")[0]
        if target_top in FORBIDDEN[top]:
            wrong.append(f"{found.where}: {found.source} imports {found.target} ({top} must not import {target_top})")
    return wrong


def cluster_violations(root: Path) -> list[str]:
    """`path:line: a imports b`, for each import between cluster's folders that the layering forbids."""
    wrong = []
    for found in all_imports(root):
        source, target = found.source.split("."), found.target.split(".")
        if source[0] != "cluster" or target[0] != "cluster" or len(source) < 2 or len(target) < 2:
            continue
        if source[1] != target[1] and target[1] not in CLUSTER_MAY_IMPORT[source[1]]:
            wrong.append(f"{found.where}: {found.source} imports {found.target} (cluster/{source[1]} may not)")
    return wrong


def import_circles(root: Path) -> list[str]:
    """Each set of modules that import each other, round and round (a strongly connected component),
    told as the imports that close it."""
    modules = module_files(root)
    edges: dict[str, list[Import]] = {name: [] for name in modules}
    for found in all_imports(root):  # one edge per pair of modules, at its first import
        linked = any(edge.target == found.target for edge in edges[found.source])
        if found.target in modules and found.target != found.source and not linked:
            edges[found.source].append(found)
    circles = []
    for component in _components(edges):
        if len(component) > 1:
            inside = [f for name in sorted(component) for f in edges[name] if f.target in component]
            circles.append("; ".join(f"{f.where}: {f.source} imports {f.target}" for f in inside))
    return circles


def _components(edges: dict[str, list[Import]]) -> list[set[str]]:
    """Tarjan's strongly connected components of the import graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for edge in edges[name]:
            if edge.target not in index:
                visit(edge.target)
                low[name] = min(low[name], low[edge.target])
            elif edge.target in on_stack:
                low[name] = min(low[name], index[edge.target])
        if low[name] == index[name]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == name:
                    break
            found.append(component)

    for name in edges:
        if name not in index:
            visit(name)
    return found


def test_the_import_direction_holds() -> None:
    wrong = direction_violations(ROOT)
    assert not wrong, "imports against anneal <- trainers <- cluster:\n" + "\n".join(wrong)


def test_cluster_folders_import_only_the_shared_code_below_them() -> None:
    wrong = cluster_violations(ROOT)
    assert not wrong, "imports across cluster's folders:\n" + "\n".join(wrong)


def test_every_cluster_folder_has_its_place_in_the_layering() -> None:
    folders = {p.parent.name for p in (ROOT / "cluster").glob("*/__init__.py")}
    assert folders | {"environment"} == set(CLUSTER_MAY_IMPORT)


def test_no_module_imports_itself_round_a_circle() -> None:
    circles = import_circles(ROOT)
    assert not circles, "import circles:\n" + "\n".join(circles)


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


# Small trees that break one rule each, to show that the checks see it and name it.
AGAINST_THE_DIRECTION = {
    "anneal/cli.py": "def run():\n    from cluster.local import up\n",
    "cluster/local.py": "",
    "trainers/registry.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import cluster.local\n",
}
ACROSS_PROCESSES = {
    "cluster/driver/__init__.py": "",
    "cluster/driver/finish.py": "def deploy():\n    from cluster.server.studies import Studies\n",
    "cluster/server/__init__.py": "",
    "cluster/server/studies.py": "from cluster.store import store\n",
    "cluster/store/__init__.py": "",
    "cluster/store/store.py": "",
}
ROUND_A_CIRCLE = {
    "trainers/contract.py": "def load():\n    from trainers.registry import import_target\n",
    "trainers/registry.py": "from trainers import datasets\n",
    "trainers/datasets.py": "from .contract import Splits\n",
    "trainers/mlp.py": "from trainers.contract import Splits\n",
}


def test_an_import_inside_a_function_against_the_direction_is_named(tmp_path: Path) -> None:
    assert direction_violations(write(tmp_path, AGAINST_THE_DIRECTION)) == [
        "anneal/cli.py:2: anneal.cli imports cluster.local (anneal must not import cluster)",
        "trainers/registry.py:3: trainers.registry imports cluster.local (trainers must not import cluster)",
    ]


def test_a_driver_module_that_reaches_into_the_server_is_named(tmp_path: Path) -> None:
    assert cluster_violations(write(tmp_path, ACROSS_PROCESSES)) == [
        "cluster/driver/finish.py:2: cluster.driver.finish imports cluster.server.studies (cluster/driver may not)"
    ]


def test_a_circle_through_a_function_level_import_is_named(tmp_path: Path) -> None:
    assert import_circles(write(tmp_path, ROUND_A_CIRCLE)) == [
        "trainers/contract.py:2: trainers.contract imports trainers.registry; "
        "trainers/datasets.py:1: trainers.datasets imports trainers.contract; "
        "trainers/registry.py:1: trainers.registry imports trainers.datasets"
    ]


def test_one_anneal_command_holds_the_client_and_the_server_commands() -> None:
    from anneal.cli import build_parser
    from cluster.local.cli import add_server_commands

    (script,) = entry_points(group="console_scripts", name="anneal")
    assert script.value == "cluster.local.cli:main"  # the command enters on the cluster side
    parser = build_parser([add_server_commands])
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    assert set(commands.choices) == {
        *("submit", "watch", "status", "cancel", "deploy", "predict", "trainers", "plot"),
        *("rollback", "undeploy", "deployments"),
        *("up", "down", "serve", "token", "run", "demo"),
    }


@pytest.mark.parametrize("package", ["server", "driver", "trial", "serving", "store", "tracking", "local"])
def test_each_cluster_folder_says_which_process_runs_it(package: str) -> None:
    init = ROOT / "cluster" / package / "__init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
    assert "process" in docstring or "runs" in docstring, f"{init} does not say which process runs it"


def test_nothing_but_the_shared_environment_lies_directly_under_cluster() -> None:
    loose = sorted(p.name for p in (ROOT / "cluster").glob("*.py"))
    assert loose == ["__init__.py", "environment.py"]
