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

Steps 2 and 3 (YAML and positions) are :mod:`bastion.spec._yaml_tree`; step 4's wording of
pydantic's errors is :mod:`bastion.spec._config_errors`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bastion.errors import ConfigError
from bastion.spec._config_errors import describe, from_pydantic
from bastion.spec._env import REFERENCE, refusal
from bastion.spec._yaml_tree import (
    MAX_DEPTH,
    MAX_NODES,
    KeyPath,
    Problem,
    Refused,
    dotted,
    parse_yaml,
    position,
)
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
MAX_REPORTED = 8


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
        data, marks = parse_yaml(raw)
        if not isinstance(data, dict):
            got = "nothing (the file is empty)" if data is None else describe(data)
            raise Refused([Problem(1, 1, "", f"expected a mapping at the top level, got {got}")])
        try:
            config = PipelineConfig.model_validate(data)
        except ValidationError as exc:
            raise Refused([from_pydantic(err, marks) for err in exc.errors()]) from None
        found: list[Problem] = []
        if check_env:  # a file about to run; a stored one's contract is read as it was
            found += [_positioned(path, what, marks) for path, what in file_problems(config)]
            found += _env_problems(config, raw, marks)
        if found:
            raise Refused(found)
    except Refused as refused:
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


def _positioned(
    path: Sequence[str], what: str, marks: Mapping[KeyPath, tuple[int, int]]
) -> Problem:
    line, col = position(path, marks)
    return Problem(line, col, dotted(tuple(str(p) for p in path)), what)


def locate(raw: bytes, file: str, path: Sequence[str]) -> str:
    """``file:line:col`` of the key path ``path`` in the pipeline file ``raw`` (its nearest
    written ancestor when the key is not written), for messages that say what to edit."""
    line, col = position(path, _marks(raw))
    return f"{file}:{line}:{col}"


def _marks(raw: bytes) -> dict[KeyPath, tuple[int, int]]:
    try:
        return parse_yaml(raw)[1] or {(): (0, 0)}
    except Refused:
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


# -- environment references ----------------------------------------------------------------


def _env_problems(
    config: PipelineConfig, raw: bytes, marks: Mapping[KeyPath, tuple[int, int]]
) -> list[Problem]:
    """A problem per ``${NAME}`` in a source URL that may not be expanded here; positioned
    at the reference itself when the URL is on its key's line, else at the key."""
    lines = raw.decode("utf-8-sig").splitlines()
    found: list[Problem] = []
    for name, source in config.data.sources.items():
        for ref in REFERENCE.finditer(source.url or ""):
            why = refusal(ref.group(1))
            if why is None:
                continue
            at = ("data", "sources", name, "url")
            line, col = position(at, marks)
            text = lines[line - 1] if 0 < line <= len(lines) else ""
            hit = text.find(ref.group(0), col - 1)
            found.append(Problem(line, hit + 1 if hit >= 0 else col, dotted(at), why))
    return found


def _message(file: str, problems: list[Problem]) -> str:
    problems = sorted(set(problems))
    lines = [p.render(file) for p in problems[:MAX_REPORTED]]
    if len(problems) > MAX_REPORTED:
        lines.append(f"... and {len(problems) - MAX_REPORTED} more")
    return "\n".join(lines)
