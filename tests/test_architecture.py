"""The lines the architecture never crosses, checked on the source (see README, How it works)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import edgelat

ROOT = Path(edgelat.__file__).parent


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports, at module level or inside functions (a lazy import is still a dependency);
    ``from package import name`` counts ``package.name`` too, which may be a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _edgelat_imports(folder: str) -> dict[str, set[str]]:
    return {str(p.relative_to(ROOT)): {n for n in _imports(p) if n.startswith("edgelat")} for p in (ROOT / folder).rglob("*.py")}


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("ops", ("edgelat.profiler", "edgelat.predictors", "edgelat.nas", "edgelat.cli", "edgelat.datasets")),
        ("predictors", ("edgelat.profiler.transports", "edgelat.profiler.agent_client", "edgelat.cli", "paramiko")),
        ("nas", ("edgelat.profiler", "edgelat.predictors", "edgelat.workflows", "edgelat.cli")),
        ("datasets", ("edgelat.profiler", "edgelat.predictors", "edgelat.nas", "edgelat.cli")),
        ("profiler", ("edgelat.predictors", "edgelat.nas", "edgelat.cli")),
    ],
)
def test_layers_do_not_import_upwards(folder: str, forbidden: tuple[str, ...]) -> None:
    found = _edgelat_imports(folder)
    assert found, f"no modules found under {folder}"
    bad = {f: sorted(n for n in names if n.startswith(forbidden)) for f, names in found.items()}
    assert not {f: b for f, b in bad.items() if b}


def test_nothing_imports_the_cli() -> None:
    users = [str(p) for p in ROOT.rglob("*.py") if p.name != "cli.py" and "edgelat.cli" in _imports(p)]
    assert not users


def test_public_api_is_what_the_readme_says() -> None:
    assert sorted(edgelat.__all__) == ["__version__", "open_workspace", "predict", "predict_many"]


def test_the_agent_imports_only_the_standard_library() -> None:
    """It is shipped to devices that may have nothing but a Python: at module level it imports the standard
    library only, and the functions that load and time kernels import TVM's runtime and numpy, nothing else."""
    tree = ast.parse((ROOT / "device_agents" / "agent.py").read_text())
    top_level = {a.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for a in node.names}
    top_level |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    assert top_level and top_level <= stdlib, sorted(top_level - stdlib)
    everywhere = {name.split(".")[0] for name in _imports(ROOT / "device_agents" / "agent.py")}
    assert everywhere - stdlib <= {"numpy", "tvm"}, sorted(everywhere - stdlib)


def test_no_import_cycles() -> None:
    """Modules import each other in one direction only (predict -> adapt -> model, spaces -> spaces.base), lazily or not."""
    modules = {".".join(("edgelat", *p.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__"): p for p in ROOT.rglob("*.py")}
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    # a package's own __init__ is imported on the way to its modules: not an edge back
    graph = {name: {m for m in deps if not name.startswith(m + ".")} for name, deps in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_every_exception_lives_in_errors_py() -> None:
    """One exception tree (edgelat.errors), so callers and the CLI's handler find every error edgelat raises on purpose."""
    import edgelat.errors

    elsewhere = []
    for path in ROOT.rglob("*.py"):
        if path.name == "errors.py" or "device_agents" in path.parts:  # the agent ships alone, standard library only
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception")) for b in node.bases):
                elsewhere.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not elsewhere, elsewhere
    assert all(issubclass(getattr(edgelat.errors, n), edgelat.errors.EdgelatError) for n in edgelat.errors.__all__)


def test_workflows_exports_resolve_to_what_they_name() -> None:
    """The package loads its exports lazily: each resolves, and none is shadowed by a submodule of the same name."""
    import types

    import edgelat.workflows as workflows

    for name in workflows.__all__:
        assert not isinstance(getattr(workflows, name), types.ModuleType), name
    assert sorted(workflows._WHERE) == sorted(workflows.__all__)
