"""Safe YAML into plain data, with the line and column of every key path (steps 2 and 3 of
:mod:`bastion.spec.loader`).

:func:`parse_yaml` decodes the bytes, composes the node tree with :class:`yaml.SafeLoader`,
walks it once without recursion (at most :data:`MAX_NODES` nodes, aliases counted at each
use, and :data:`MAX_DEPTH` levels) recording where each mapping key and sequence item sits,
then builds the objects refusing duplicate keys. Every failure is a :class:`Refused` holding
:class:`Problem` s, each positioned in the file; :func:`position` finds a key path's nearest
written node and :func:`dotted` writes a path as ``a.b[0].c``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "KeyPath",
    "Problem",
    "Refused",
    "dotted",
    "parse_yaml",
    "position",
]

MAX_NODES = 100_000  # nodes visited, aliases counted at each use
MAX_DEPTH = 64

_MERGE_TAG = "tag:yaml.org,2002:merge"
KeyPath = tuple[str, ...]
_Mapping = tuple[KeyPath, list[Node]]  # a mapping's key path and its own key nodes


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in the file: where (1-based line and column, dotted key path) and what."""

    line: int  # 1-based
    col: int  # 1-based
    where: str  # dotted key path, "" for the whole file
    what: str

    def render(self, file: str) -> str:
        prefix = f"{file}:{self.line}:{self.col}: "
        return prefix + (f"{self.where}: {self.what}" if self.where else self.what)


class Refused(Exception):
    """Internal: problems found before validation."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems)
        self.problems = problems


def parse_yaml(raw: bytes) -> tuple[Any, dict[KeyPath, tuple[int, int]]]:
    """The plain data in ``raw`` and the 0-based (line, column) of each key path; Refused."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise Refused([Problem(line, col, "", "not valid UTF-8")]) from None
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}
        marks, loader.mappings = _walk(node)
        data = loader.construct_document(node)
        if loader.duplicates:
            raise Refused(loader.duplicates)
        return data, marks
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or "cannot load this value"
        if what.startswith("could not determine a constructor"):
            what = "this YAML tag is not allowed (plain data only)"
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise Refused([Problem(line, col, "", what)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise Refused([Problem(line, col, "", f"YAML syntax error: {what}")]) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character
        code = char if isinstance(char, int) else ord(char) if len(str(char)) == 1 else 0
        what = f"character U+{code:04X} is not allowed in YAML"
        raise Refused([Problem(line, col, "", what)]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML error above has a mark
        raise Refused([Problem(1, 1, "", f"YAML error: {exc}")]) from None
    except RecursionError:
        raise Refused([Problem(1, 1, "", f"nested deeper than {MAX_DEPTH} levels")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _walk(root: Node) -> tuple[dict[KeyPath, tuple[int, int]], dict[int, _Mapping]]:
    """Positions by key path; each mapping's path and its own keys (before any merge)."""
    marks: dict[KeyPath, tuple[int, int]] = {(): (root.start_mark.line, root.start_mark.column)}
    mappings: dict[int, _Mapping] = {}
    stack: list[tuple[Node, KeyPath]] = [(root, ())]
    visited = 0
    while stack:
        node, path = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            raise _refuse(None, (), f"more than {MAX_NODES} YAML nodes (aliases count each use)")
        if len(path) > MAX_DEPTH:
            raise _refuse(
                node.start_mark, path[:MAX_DEPTH], f"nested deeper than {MAX_DEPTH} levels"
            )
        if isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                child = (*path, str(i))
                marks.setdefault(child, (item.start_mark.line, item.start_mark.column))
                stack.append((item, child))
        elif isinstance(node, MappingNode):
            own = [key for key, _ in node.value if key.tag != _MERGE_TAG]
            mappings.setdefault(id(node), (path, own))
            for key, value in node.value:
                if key.tag == _MERGE_TAG:
                    stack.append((value, path))  # merged keys land in this same mapping
                    continue
                child = (*path, key.value if isinstance(key, ScalarNode) else "?")
                marks.setdefault(child, (key.start_mark.line, key.start_mark.column))
                stack.append((value, child))
    return marks, mappings


def _refuse(mark: yaml.Mark | None, path: KeyPath, what: str) -> Refused:
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return Refused([Problem(line, col, dotted(path), what)])


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that refuses duplicate keys and positions every construction failure."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.mappings: dict[int, _Mapping] = {}
        self.duplicates: list[Problem] = []

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot load this value ({exc})", node.start_mark
            ) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        # The keys written in this mapping, as the walk saw them: SafeLoader flattens merge
        # keys (<<) into node.value in place, and an overridden merged key is no duplicate.
        path, own = self.mappings.get(id(node), ((), []))
        seen: dict[Any, int] = {}
        for key_node in own:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                ) from None
            if first is None:
                seen[key] = key_node.start_mark.line + 1
                continue
            what = f"duplicate key (first defined on line {first})"
            self.duplicates.extend(_refuse(key_node.start_mark, (*path, str(key)), what).problems)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def position(loc: Sequence[Any], marks: Mapping[KeyPath, tuple[int, int]]) -> tuple[int, int]:
    """1-based (line, column) of ``loc``, or of its longest prefix written in the file."""
    path = tuple(str(p) for p in loc)
    while path not in marks:  # the longest prefix that has a position; () always does
        path = path[:-1]
    line, col = marks[path]
    return line + 1, col + 1


def dotted(path: Sequence[str]) -> str:
    """A key path as written in messages: ``a.b[0].c`` (cut after 8 parts when over 12)."""
    if len(path) > 12:
        return dotted(path[:8]) + "..."
    out = ""
    for part in path:
        out += f"[{part}]" if part.isdigit() and out else ("." if out else "") + part
    return out
