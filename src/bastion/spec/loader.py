# Over 400 lines, because one job (file -> config); errors mapped back to the file's lines and keys.
"""Read a pipeline file: safe YAML, exact positions, one :class:`~bastion.errors.ConfigError`.

How it works:

1. The file is read once, in full (at most :data:`MAX_BYTES`); those bytes are returned
   with the config, and their SHA-256 is the config digest.
2. The text is composed into a YAML node tree with :class:`yaml.SafeLoader` — plain data
   only; a ``!!python/...`` tag is an error. The tree is walked once, without recursion,
   recording the line and column of every mapping key and sequence item under its key
   path. The walk refuses more than :data:`MAX_NODES` nodes (aliases counted each time
   they are used, so "billion laughs" stops early) and nesting deeper than
   :data:`MAX_DEPTH` (which also stops recursive aliases).
3. The tree is built into Python objects by a SafeLoader subclass that refuses duplicate
   keys in a mapping (PyYAML would silently keep the last one) and wraps any construction
   failure (a bad date, an unhashable key) into a YAML error that carries its position.
4. :class:`~bastion.spec.config.PipelineConfig` validates the objects; each pydantic
   error's location is looked up in the recorded positions (the parent mapping for a
   missing key) and rewritten as ``FILE:LINE:COL: dotted.key.path: what is wrong``. A
   cross-field check names its own node (a list item, a key: ``bastion_at`` errors), never
   its parent mapping; :func:`~bastion.spec.config.file_problems` (the label's positive
   class against its column, the split against the sources) is checked the same way.
5. A ``${NAME}`` in a source URL must name a variable the environment allows
   (``BASTION_ALLOW_ENV``; never ``BASTION_*``, see :mod:`bastion.spec._env`); any other
   is refused here, positioned at the reference, before anything runs.

Every problem — a missing file, bad UTF-8, a YAML syntax error, a duplicate key, a wrong
type, an unknown key, a value outside a pattern or enum — becomes ONE ConfigError whose
message lists the first :data:`MAX_REPORTED` problems, one per line, sorted by position.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bastion.errors import ConfigError
from bastion.spec._checks import AT
from bastion.spec._env import REFERENCE, refusal
from bastion.spec.config import PipelineConfig, file_problems, json_schema

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_REPORTED",
    "config_error_at",
    "load_pipeline",
    "locate",
    "parse_pipeline",
    "pipeline_json_schema",
]

MAX_BYTES = 1 << 20  # a pipeline file is a page or two of YAML, never a megabyte
MAX_NODES = 100_000  # nodes visited, aliases counted at each use
MAX_DEPTH = 64
MAX_REPORTED = 8

_MERGE_TAG = "tag:yaml.org,2002:merge"
_Path = tuple[str, ...]
_Mapping = tuple[_Path, list[Node]]  # a mapping's key path and its own key nodes


@dataclass(frozen=True, order=True)
class _Problem:
    line: int  # 1-based
    col: int  # 1-based
    where: str  # dotted key path, "" for the whole file
    what: str

    def render(self, file: str) -> str:
        prefix = f"{file}:{self.line}:{self.col}: "
        return prefix + (f"{self.where}: {self.what}" if self.where else self.what)


class _Refused(Exception):
    """Internal: problems found before validation."""

    def __init__(self, problems: list[_Problem]) -> None:
        super().__init__(problems)
        self.problems = problems


def load_pipeline(path: Path, *, check_env: bool = True) -> tuple[PipelineConfig, bytes]:
    """Read, parse and validate a pipeline file.

    Returns the validated config and the file's raw bytes (hash them for the config
    digest). Raises :class:`~bastion.errors.ConfigError` naming the file, line, column,
    key path, what was expected and what was given. With ``check_env`` (the default) a
    ``${NAME}`` in a source URL that this environment does not allow (see
    :mod:`bastion.spec._env`) is refused too, and so is what
    :func:`~bastion.spec.config.file_problems` finds; pass False only to read a stored
    file's contract (accepted when it was run), never to run it.
    """
    path = Path(path)
    raw = _read(path)
    return parse_pipeline(raw, str(path), check_env=check_env), raw


def parse_pipeline(raw: bytes, file: str, *, check_env: bool = True) -> PipelineConfig:
    """:func:`load_pipeline` for a pipeline file's bytes already in hand (a stored one);
    ``file`` names it in messages, in place of a path."""
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{file}: pipeline file is larger than {MAX_BYTES} bytes")
    try:
        data, marks = _parse(raw)
        if not isinstance(data, dict):
            got = "nothing (the file is empty)" if data is None else _describe(data)
            raise _Refused([_Problem(1, 1, "", f"expected a mapping at the top level, got {got}")])
        try:
            config = PipelineConfig.model_validate(data)
        except ValidationError as exc:
            raise _Refused([_from_pydantic(err, marks) for err in exc.errors()]) from None
        found: list[_Problem] = []
        if check_env:  # a file about to run; a stored one's contract is read as it was
            found += [_positioned(path, what, marks) for path, what in file_problems(config)]
            found += _env_problems(config, raw, marks)
        if found:
            raise _Refused(found)
    except _Refused as refused:
        raise ConfigError(_message(file, refused.problems)) from None
    return config


def config_error_at(
    raw: bytes, file: str, problems: Sequence[tuple[Sequence[str], str]]
) -> ConfigError:
    """One ConfigError for problems found after loading (a stage's load-time check), each
    ``(key path, what is wrong; what is expected)``, cited at its node in ``raw`` as the
    loader cites its own: ``file:line:col: key.path: what``."""
    marks = _marks(raw)
    return ConfigError(_message(file, [_positioned(path, what, marks) for path, what in problems]))


def _positioned(path: Sequence[str], what: str, marks: Mapping[_Path, tuple[int, int]]) -> _Problem:
    line, col = _position(path, marks)
    return _Problem(line, col, _dotted(tuple(str(p) for p in path)), what)


def locate(raw: bytes, file: str, path: Sequence[str]) -> str:
    """``file:line:col`` of the key path ``path`` in the pipeline file ``raw`` (its nearest
    written ancestor when the key is not written), for messages that say what to edit."""
    line, col = _position(path, _marks(raw))
    return f"{file}:{line}:{col}"


def _marks(raw: bytes) -> dict[_Path, tuple[int, int]]:
    try:
        return _parse(raw)[1] or {(): (0, 0)}
    except _Refused:
        return {(): (0, 0)}


def pipeline_json_schema() -> dict[str, Any]:
    """The JSON Schema of a pipeline file (what ``bastion schema`` prints)."""
    return json_schema()


# -- reading and parsing -------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: pipeline file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a pipeline file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the pipeline file ({exc.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: pipeline file is larger than {MAX_BYTES} bytes")
    return raw


def _parse(raw: bytes) -> tuple[Any, dict[_Path, tuple[int, int]]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _Refused([_Problem(line, col, "", "not valid UTF-8")]) from None
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}
        marks, loader.mappings = _walk(node)
        data = loader.construct_document(node)
        if loader.duplicates:
            raise _Refused(loader.duplicates)
        return data, marks
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or "cannot load this value"
        if what.startswith("could not determine a constructor"):
            what = "this YAML tag is not allowed (plain data only)"
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise _Refused([_Problem(line, col, "", what)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise _Refused([_Problem(line, col, "", f"YAML syntax error: {what}")]) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character
        code = char if isinstance(char, int) else ord(char) if len(str(char)) == 1 else 0
        what = f"character U+{code:04X} is not allowed in YAML"
        raise _Refused([_Problem(line, col, "", what)]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML error above has a mark
        raise _Refused([_Problem(1, 1, "", f"YAML error: {exc}")]) from None
    except RecursionError:
        raise _Refused([_Problem(1, 1, "", f"nested deeper than {MAX_DEPTH} levels")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _walk(root: Node) -> tuple[dict[_Path, tuple[int, int]], dict[int, _Mapping]]:
    """Positions by key path; each mapping's path and its own keys (before any merge)."""
    marks: dict[_Path, tuple[int, int]] = {(): (root.start_mark.line, root.start_mark.column)}
    mappings: dict[int, _Mapping] = {}
    stack: list[tuple[Node, _Path]] = [(root, ())]
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


def _refuse(mark: yaml.Mark | None, path: _Path, what: str) -> _Refused:
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return _Refused([_Problem(line, col, _dotted(path), what)])


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that refuses duplicate keys and positions every construction failure."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.mappings: dict[int, _Mapping] = {}
        self.duplicates: list[_Problem] = []

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


# -- environment references ----------------------------------------------------------------


def _env_problems(
    config: PipelineConfig, raw: bytes, marks: Mapping[_Path, tuple[int, int]]
) -> list[_Problem]:
    """A problem per ``${NAME}`` in a source URL that may not be expanded here; positioned
    at the reference itself when the URL is on its key's line, else at the key."""
    lines = raw.decode("utf-8-sig").splitlines()
    found: list[_Problem] = []
    for name, source in config.data.sources.items():
        for ref in REFERENCE.finditer(source.url or ""):
            why = refusal(ref.group(1))
            if why is None:
                continue
            at = ("data", "sources", name, "url")
            line, col = _position(at, marks)
            text = lines[line - 1] if 0 < line <= len(lines) else ""
            hit = text.find(ref.group(0), col - 1)
            found.append(_Problem(line, hit + 1 if hit >= 0 else col, _dotted(at), why))
    return found


# -- turning pydantic errors into positioned problems --------------------------------------

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "a boolean (true or false)",
    "bool_parsing": "a boolean (true or false)",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def _from_pydantic(err: Mapping[str, Any], marks: Mapping[_Path, tuple[int, int]]) -> _Problem:
    loc = tuple(part for part in err["loc"] if part != "[key]")
    kind: str = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    given = err.get("input")
    at = loc[:-1] if kind == "missing" else loc
    if kind == AT:  # a cross-field check that names its own node below the model
        at = (*loc, *ctx["at"])
    line, col = _position(at, marks)
    if kind == AT:
        what = str(ctx["what"])
    elif kind == "missing":
        what = f"missing required key {str(loc[-1])!r}"
    elif kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        what = "unknown key" + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
    elif kind == "literal_error":
        options = _literal_options(loc) or [ctx.get("expected", "?")]
        what = f"expected one of: {', '.join(options)}; got {_describe(given)}"
    elif kind == "string_pattern_mismatch":
        what = f"expected a string matching {ctx.get('pattern')}, got {_describe(given)}"
    elif kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        what = f"expected a number {_BOUNDS[kind]} {bound}, got {_describe(given)}"
    elif kind in ("too_short", "string_too_short"):
        what = f"expected at least {ctx.get('min_length')} item(s), got {_describe(given)}"
    elif kind in ("too_long", "string_too_long"):
        what = f"expected at most {ctx.get('max_length')} item(s), got {_describe(given)}"
    elif kind in _EXPECTED:
        what = f"expected {_EXPECTED[kind]}, got {_describe(given)}"
    elif kind == "value_error":
        what = str(err["msg"]).removeprefix("Value error, ")
    else:
        what = f"{err['msg']}, got {_describe(given)}"
    return _Problem(line, col, _dotted(tuple(str(p) for p in at)), what)


def _position(loc: Sequence[Any], marks: Mapping[_Path, tuple[int, int]]) -> tuple[int, int]:
    path = tuple(str(p) for p in loc)
    while path not in marks:  # the longest prefix that has a position; () always does
        path = path[:-1]
    line, col = marks[path]
    return line + 1, col + 1


def _annotation_at(loc: Sequence[Any]) -> Any:
    """The declared type at a location of the config, or None if it cannot be followed."""
    tp: Any = PipelineConfig
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {(f.alias or n): f for n, f in tp.model_fields.items()}
            if part not in fields:
                return None
            tp = fields[part].annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
    return _unwrap(tp)


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _allowed_keys(loc: Sequence[Any]) -> list[str]:
    tp = _annotation_at(loc)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return sorted((f.alias or n) for n, f in tp.model_fields.items())
    return []


def _literal_options(loc: Sequence[Any]) -> list[str]:
    tp = _annotation_at(loc)
    if typing.get_origin(tp) is typing.Literal:
        return [str(a) for a in typing.get_args(tp)]
    return []


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(path: Sequence[str]) -> str:
    if len(path) > 12:
        return _dotted(path[:8]) + "..."
    out = ""
    for part in path:
        out += f"[{part}]" if part.isdigit() and out else ("." if out else "") + part
    return out


def _message(file: str, problems: list[_Problem]) -> str:
    problems = sorted(set(problems))
    lines = [p.render(file) for p in problems[:MAX_REPORTED]]
    if len(problems) > MAX_REPORTED:
        lines.append(f"... and {len(problems) - MAX_REPORTED} more")
    return "\n".join(lines)
