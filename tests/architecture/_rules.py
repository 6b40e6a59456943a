"""The architecture rules as functions over source text, so each can be run on the real tree
and on a planted violation.

A tree is ``{module name: source}``; ``packages`` names the modules that are packages
(their ``__init__``), which relative imports need. Every import counts — at module level,
inside functions, relative (``from . import x``) and ``importlib.import_module("literal")``
— except those under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass(frozen=True)
class Import:
    """One import in ``module``: the module it names and the names it takes from it."""

    module: str
    target: str
    names: tuple[str, ...]
    line: int


def real_tree() -> tuple[dict[str, str], set[str]]:
    """The source of every module under src/bastion (migrations aside)."""
    tree: dict[str, str] = {}
    packages: set[str] = set()
    for path in sorted((SRC / "bastion").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
            packages.add(".".join(parts))
        tree[".".join(parts)] = path.read_text()
    return tree, packages


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports(module: str, source: str, packages: set[str]) -> list[Import]:
    """Every import ``module`` makes, with relative ones resolved."""
    tree = ast.parse(source)
    skip = _type_checking_nodes(tree)
    base = module.split(".") if module in packages else module.split(".")[:-1]
    found: list[Import] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [Import(module, a.name, (), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(Import(module, target, tuple(a.name for a in node.names), node.lineno))
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0] if node.args else None
            if called == "import_module" and isinstance(arg, ast.Constant):
                found.append(Import(module, str(arg.value), (), node.lineno))
    return found


def _owner(target: str, tree: Mapping[str, str]) -> str | None:
    """The module of ours that ``target`` names (or the package holding it), if any."""
    while target:
        if target in tree:
            return target
        if "." not in target:
            return None
        target = target.rsplit(".", 1)[0]
    return None


def edges(tree: Mapping[str, str], packages: set[str]) -> dict[str, set[str]]:
    """module -> the modules of ours it imports (a submodule taken with ``from pkg import
    sub`` is an edge to ``pkg.sub``; the package itself only when a name is taken from it)."""
    graph: dict[str, set[str]] = {m: set() for m in tree}
    for module, source in tree.items():
        for imp in imports(module, source, packages):
            subs = {f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in tree}
            graph[module] |= subs
            if not imp.names or len(subs) < len(imp.names):
                owner = _owner(imp.target, tree)
                if owner is not None:
                    graph[module].add(owner)
            graph[module].discard(module)
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def layer_of(module: str, layers: Mapping[str, str]) -> str | None:
    """The layer of ``module``: the longest prefix in ``layers`` that names it."""
    best: str | None = None
    for prefix in layers:
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return layers[best] if best is not None else None


def layer_violations(
    graph: Mapping[str, set[str]],
    layers: Mapping[str, str],
    allowed: Mapping[str, Iterable[str]],
) -> list[str]:
    """Imports from one layer into a layer it may not use (a layer may use itself)."""
    bad: list[str] = []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module, layers)
        if mine is None:
            bad.append(f"{module}: in no layer")
            continue
        for target in sorted(targets):
            theirs = layer_of(target, layers)
            if theirs is not None and theirs != mine and theirs not in set(allowed[mine]):
                bad.append(f"{module} ({mine}) imports {target} ({theirs})")
    return bad


def private_reach_ins(tree: Mapping[str, str], packages: set[str]) -> list[str]:
    """``from other_module import _name`` where ``_name`` is not a module of ours."""
    bad: list[str] = []
    for module, source in tree.items():
        for imp in imports(module, source, packages):
            if _owner(imp.target, tree) is None or imp.target == module:
                continue
            for name in imp.names:
                if name.startswith("_") and f"{imp.target}.{name}" not in tree:
                    bad.append(f"{module}:{imp.line} takes {imp.target}.{name}")
    return bad


def hazmat_outside(tree: Mapping[str, str], packages: set[str], home: str) -> list[str]:
    """Modules outside ``home`` that import ``cryptography.hazmat``."""
    return [
        f"{module}:{imp.line}"
        for module, source in tree.items()
        if not (module == home or module.startswith(home + "."))
        for imp in imports(module, source, packages)
        if imp.target.startswith("cryptography.hazmat")
    ]


def public_definitions(source: str) -> list[str]:
    """Top-level public functions and classes of a module."""
    return [
        node.name
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and not node.name.startswith("_")
    ]


def declared_all(source: str) -> list[str] | None:
    """The literal ``__all__`` of a module, if it has one."""
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = ast.literal_eval(node.value)  # type: ignore[union-attr]
            return [str(v) for v in value]
    return None


def all_problems(module: str, source: str) -> list[str]:
    """``__all__`` missing, unsorted (ruff's RUF022 order) or leaving out a public name."""
    names = declared_all(source)
    public = public_definitions(source)
    if names is None:
        return [f"{module}: public names {public} but no __all__"] if public else []
    problems = []
    if names != sorted(names, key=_ruf022):
        problems.append(f"{module}: __all__ is not sorted")
    missing = sorted(set(public) - set(names))
    if missing:
        problems.append(f"{module}: __all__ leaves out {missing}")
    return problems


def _ruf022(name: str) -> tuple[int, str]:
    if name.isupper() or (name.upper() == name and "_" in name):
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


def oversized_modules(tree: Mapping[str, str], limit: int = 400) -> list[str]:
    """Modules over ``limit`` lines whose first line does not say why (``# Over 400 lines,
    because ...``)."""
    return [
        f"{module}: {source.count(chr(10))} lines"
        for module, source in tree.items()
        if source.count("\n") > limit and not source.startswith("# Over 400 lines, because ")
    ]


def long_functions(
    tree: Mapping[str, str], prefixes: tuple[str, ...], limit: int = 60
) -> list[str]:
    """Functions over ``limit`` lines in modules under ``prefixes``."""
    found = []
    for module, source in tree.items():
        if not module.startswith(prefixes):
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > limit:
                    found.append(f"{module}.{node.name}: {size} lines")
    return found
