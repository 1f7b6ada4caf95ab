"""Hygiene of the source tree, checked by parsing it: layering, module size, no unsafe loading, __all__."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..helpers import ROOT

PACKAGES = ("orchestrator", "triggers", "executors")
MAX_LINES = 350  # STYLE: modules under about 350 lines, one reason to change each
UNSAFE_MODULES = {"pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}


def sources(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Absolute module names a module imports (relative imports stay inside their package)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_core_never_imports_triggers_or_executors() -> None:
    offenders = [
        f"{where(path, line)} imports {name}"
        for path in sources("orchestrator")
        if path.relative_to(ROOT / "orchestrator").parts[0] != "cli"
        for name, line in imported_modules(parse(path))
        if name.split(".")[0] in ("triggers", "executors")
    ]

    assert offenders == []


def test_no_module_exceeds_the_size_limit() -> None:
    too_long = [f"{path.relative_to(ROOT)}: {n} lines" for path in sources(*PACKAGES)
                if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES]

    assert too_long == []


def test_nothing_imports_pickle() -> None:
    offenders = [f"{where(path, line)} imports {name}" for path in sources(*PACKAGES)
                 for name, line in imported_modules(parse(path)) if name.split(".")[0] in UNSAFE_MODULES]

    assert offenders == []


def unsafe_calls(tree: ast.Module) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "yaml":
            for alias in node.names:
                if alias.name in UNSAFE_YAML:
                    yield f"from yaml import {alias.name}", node.lineno
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("eval", "exec"):
            yield f"{func.id}()", node.lineno
        elif (isinstance(func, ast.Attribute) and func.attr in UNSAFE_YAML
              and isinstance(func.value, ast.Name) and func.value.id == "yaml"):
            yield f"yaml.{func.attr}()", node.lineno


def test_nothing_calls_yaml_load_eval_or_exec() -> None:
    offenders = [f"{where(path, line)} calls {what}" for path in sources(*PACKAGES)
                 for what, line in unsafe_calls(parse(path))]

    assert offenders == []


def test_the_checks_see_what_they_look_for() -> None:
    tree = ast.parse("import pickle\nimport yaml\nyaml.load(s)\neval('1')\n"
                     "def lazy():\n    from executors.dispatch import X\n")

    assert [name for name, _ in imported_modules(tree)] == ["pickle", "yaml", "executors.dispatch"]
    assert [what for what, _ in unsafe_calls(tree)] == ["yaml.load()", "eval()"]


def top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            value = ast.literal_eval(node.value)
            return list(value)
    return None


def test_the_public_api_lists_exactly_its_public_names() -> None:
    tree = parse(ROOT / "orchestrator" / "__init__.py")
    exported = declared_all(tree)
    assert exported is not None

    public = {n for n in top_level_names(tree) if not n.startswith("_")} | {"__version__"}

    assert sorted(exported) == sorted(public)
    assert len(exported) == len(set(exported)), "no name is listed twice"
    package = importlib.import_module("orchestrator")
    assert [name for name in exported if not hasattr(package, name)] == []


@pytest.mark.parametrize("path", [p for p in sources(*PACKAGES) if declared_all(parse(p)) is not None],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_all_names_things_that_exist(path: Path) -> None:
    exported = declared_all(parse(path)) or []

    module = importlib.import_module(module_name(path))

    assert [name for name in exported if not hasattr(module, name)] == []
