"""The package reads in one direction: no import cycles, kernels below ops, training without the
CUDA-graph runners.

Every import statement counts: relative and absolute, inside functions and under
``TYPE_CHECKING``. ``from pkg import name`` is an edge to ``pkg.name`` when that is a submodule,
else to ``pkg`` (its ``__init__.py``).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import adaskip_ext

PACKAGE = Path(adaskip_ext.__file__).parent
ROOT = "adaskip_ext"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``__init__`` as the package)."""
    modules = {}
    for file in PACKAGE.rglob("*.py"):
        parts = (ROOT, *file.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = file
    return modules


def imports_of(name: str, file: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``name`` (defined in ``file``) imports."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == ROOT}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in modules else target)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, file, modules) for name, file in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_walker_sees_every_kind_of_import():
    graph = import_graph()
    assert "adaskip_ext.model" in graph["adaskip_ext.sampling.plan"]  # relative, two dots
    assert "adaskip_ext.kernels.group_norm_silu" in graph["adaskip_ext.ops.triton_ops"]  # in a function
    assert "adaskip_ext.sampling" in graph["adaskip_ext"]  # under TYPE_CHECKING
    assert "adaskip_ext.cli" in graph["adaskip_ext.sample"]  # `from . import cli`: the submodule


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_the_package():
    assert find_cycle(import_graph()) is None


def test_kernels_import_nothing_from_ops():
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith(f"{ROOT}.kernels"):
            assert not {t for t in targets if t.startswith(f"{ROOT}.ops")}, name


def test_importing_the_trainer_does_not_load_the_cuda_graph_runners():
    code = ("import sys; import adaskip_ext.training; from adaskip_ext import Trainer; "
            "print('adaskip_ext.sampling.runners' in sys.modules, 'adaskip_ext.training.trainer' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
