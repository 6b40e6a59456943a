"""The tree is the architecture: imports flow one way, public names are declared.

- shells (cli/) import only the public API: ``bastion``, ``bastion.errors``,
  ``bastion.workspace``, their own modules and the other shell, ``bastion.serving``;
- the server (serving/) imports the public API, the pipeline file's schema
  (``bastion.pipeline.config`` / ``loader``) and its own modules — never the store,
  the security services or the stages directly;
- the services (security/, store/) never import the shells or the workspace;
- nothing outside security/ imports ``bastion.security.hazmat``;
- no module imports pickle, joblib, dill or cloudpickle;
- every module's ``__all__`` is sorted and names only things that exist.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "bastion"
MODULES = sorted(
    p for p in SRC.rglob("*.py") if "migrations" not in p.parts and p.name != "__main__.py"
)


def _name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", [p for p in MODULES if "cli" in p.parts], ids=_name)
def test_shells_import_only_the_public_api(path: Path) -> None:
    allowed = {"bastion", "bastion.errors", "bastion.workspace"}
    bad = {
        m
        for m in _imports(path)
        if m.startswith("bastion")
        and m not in allowed
        and not m.startswith(("bastion.cli", "bastion.serving"))
    }
    assert not bad, f"{_name(path)} reaches past the public API: {sorted(bad)}"


@pytest.mark.parametrize("path", [p for p in MODULES if "serving" in p.parts], ids=_name)
def test_the_server_imports_only_the_public_api_and_the_schema(path: Path) -> None:
    allowed = {
        "bastion",
        "bastion.errors",
        "bastion.workspace",
        "bastion.pipeline.config",
        "bastion.pipeline.loader",
    }
    # the spec layer (the request contract), and the controls it wires in (live detection,
    # output hardening)
    own = ("bastion.serving", "bastion.spec", "bastion.monitoring", "bastion.defenses")
    bad = {
        m
        for m in _imports(path)
        if m.startswith("bastion") and m not in allowed and not m.startswith(own)
    }
    assert not bad, f"{_name(path)} reaches past the public API: {sorted(bad)}"


@pytest.mark.parametrize(
    "path", [p for p in MODULES if {"security", "store"} & set(p.parts)], ids=_name
)
def test_services_never_import_shells_or_the_workspace(path: Path) -> None:
    bad = {m for m in _imports(path) if m.startswith(("bastion.cli", "bastion.workspace"))}
    assert not bad, f"{_name(path)} imports upward: {sorted(bad)}"


@pytest.mark.parametrize("path", [p for p in MODULES if "defenses" in p.parts], ids=_name)
def test_defenses_never_reach_services_stages_or_shells(path: Path) -> None:
    """Detectors work on plain tables: keys, stores, the workspace and the runner are the
    caller's business (a key reaches PII pseudonymization only through a Protocol)."""
    bad = {
        m
        for m in _imports(path)
        if m.startswith(
            (
                "bastion.security",
                "bastion.store",
                "bastion.workspace",
                "bastion.cli",
                "bastion.serving",
                "bastion.stages",
                "bastion.pipeline.runner",
            )
        )
    }
    assert not bad, f"{_name(path)} reaches past the defenses layer: {sorted(bad)}"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_hazmat_stays_inside_security(path: Path) -> None:
    if "security" in path.parts:
        return
    assert not {m for m in _imports(path) if "hazmat" in m and m.startswith("bastion")}


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_pickle_family_anywhere(path: Path) -> None:
    roots = {m.split(".")[0] for m in _imports(path)}
    assert not roots & {"pickle", "joblib", "dill", "cloudpickle", "shelve", "marshal"}


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical."""
    if name.isupper() or (name.upper() == name and "_" in name):
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_all_is_sorted_and_complete(path: Path) -> None:
    module = importlib.import_module(_name(path))
    names = getattr(module, "__all__", None)
    if names is None:
        tree = ast.parse(path.read_text())
        public = [
            n.name
            for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.ClassDef) and not n.name.startswith("_")
        ]
        private_module = path.name.startswith("_") or "cli" in path.parts
        assert private_module or not public, f"{_name(path)} has public names but no __all__"
        return
    assert list(names) == sorted(names, key=_isort_key), f"{_name(path)}.__all__ is not sorted"
    for name in names:
        assert hasattr(module, name), f"{_name(path)}.__all__ names missing {name}"


def test_no_assert_statements_in_library_code() -> None:
    offenders = [
        f"{_name(p)}:{n.lineno}"
        for p in MODULES
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.Assert)
    ]
    assert not offenders, f"assert is stripped by python -O; raise instead: {offenders}"
