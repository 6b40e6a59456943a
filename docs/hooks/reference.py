"""MkDocs hook: the reference pages that are generated from the code at build time.

- ``reference/pipeline-schema.md``: every key of a pipeline file, as a table, then the JSON
  Schema itself, both from :func:`bastion.pipeline_schema` (what ``bastion schema`` prints).
- ``reference/cli.md``: every command, argument and option of the live command tree, as
  Typer's own generator writes it (``typer bastion.cli.app utils docs``), under a short
  introduction. (mkdocs-click cannot render this Typer: Typer 0.29 carries its own copy of
  click, so its options are not ``click.Option`` instances and mkdocs-click drops them.)

Nothing is written into ``docs/``: the generated pages exist only in the build.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from typing import Any

__all__ = ["cli_page", "on_files", "schema_page", "schema_rows"]

CLI_PAGE = "reference/cli.md"
SCHEMA_PAGE = "reference/pipeline-schema.md"

_BOUNDS = (
    ("minimum", "≥"),
    ("exclusiveMinimum", ">"),
    ("maximum", "≤"),
    ("exclusiveMaximum", "<"),
    ("minLength", "length ≥"),
    ("maxLength", "length ≤"),
    ("minItems", "items ≥"),
    ("minProperties", "entries ≥"),
    ("pattern", "matches"),
)


CLI_INTRO = """\
Generated at build time from the live command tree (`bastion.cli.app:app`, the Typer app
behind the `bastion` console script) by Typer's own generator, so every command, argument
and option below is one the installed `bastion` accepts; `bastion COMMAND --help` prints
the same text.

Every command that opens a home reads the passphrase from `BASTION_MASTER_KEY` and the
caller's token from `BASTION_TOKEN`; `--home` (or `BASTION_HOME`) picks the home,
`./.bastion` by default. Exit codes: `0` ok, `1` a check, gate or access failed, `2` bad
usage or input. A traceback is shown only with `--debug`.
"""


def cli_page() -> str:
    """The Markdown of the CLI page: ``typer bastion.cli.app utils docs`` under an intro."""
    done = subprocess.run(  # our own interpreter, fixed arguments
        [sys.executable, "-m", "typer", "bastion.cli.app", "utils", "docs", "--name", "bastion"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0 or not done.stdout.startswith("# `bastion`"):
        raise RuntimeError(f"typer utils docs failed ({done.returncode}): {done.stderr.strip()}")
    # one level down, under the page's own title: `bastion` is a section, its commands below
    lines = [f"#{line}" if line.startswith("#") else line for line in done.stdout.splitlines()]
    return "\n".join(["# Command line", "", CLI_INTRO, *lines, ""])


def on_files(files: Any, config: Any) -> Any:
    """Adds the generated CLI and pipeline-schema pages to the build."""
    from mkdocs.structure.files import File

    import bastion

    files.append(File.generated(config, CLI_PAGE, content=cli_page()))
    schema = schema_page(bastion.pipeline_schema())
    files.append(File.generated(config, SCHEMA_PAGE, content=schema))
    return files


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        return dict(defs[ref.rsplit("/", 1)[-1]])
    return node


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    node = _resolve(node, defs)
    if "anyOf" in node:
        return " or ".join(_type(choice, defs) for choice in node["anyOf"])
    if "const" in node:
        return json.dumps(node["const"])
    if "enum" in node:
        return " / ".join(json.dumps(v) for v in node["enum"])
    kind = node.get("type", "any")
    if kind == "array":
        item = _resolve(node.get("items", {}), defs)
        kind = f"list of {_type(item, defs) if item.get('type') != 'object' else 'objects'}"
    elif kind == "object" and isinstance(node.get("additionalProperties"), dict):
        value = _resolve(node["additionalProperties"], defs)
        kind = f"map of {_type(value, defs) if value.get('type') != 'object' else 'objects'}"
    bounds = [f"{word} {json.dumps(node[key])}" for key, word in _BOUNDS if key in node]
    return f"{kind} ({', '.join(bounds)})" if bounds else kind


def _children(node: dict[str, Any], defs: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """Where a node's own keys live: its properties, a map's values, a list's items."""
    node = _resolve(node, defs)
    if "properties" in node:
        return "", node
    for choice in node.get("anyOf", []):
        found = _children(choice, defs)
        if found is not None:
            return found
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and "properties" in _resolve(extra, defs):
        return ".<name>", _resolve(extra, defs)
    items = node.get("items")
    if isinstance(items, dict) and "properties" in _resolve(items, defs):
        return "[]", _resolve(items, defs)
    return None


def schema_rows(schema: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(key path, type, default or "required", description) for every key, depth first."""
    defs = schema.get("$defs", {})
    rows: list[tuple[str, str, str, str]] = []

    def walk(obj: dict[str, Any], prefix: str) -> None:
        required = set(obj.get("required", []))
        for key, node in obj["properties"].items():
            path = f"{prefix}{key}"
            target = _resolve(node, defs)
            if key in required:
                default = "required"
            elif "default" in node:
                default = json.dumps(node["default"])
            else:
                default = ""
            about = node.get("description") or target.get("description") or ""
            rows.append((path, _type(node, defs), default, about))
            inner = _children(node, defs)
            if inner is not None:
                walk(inner[1], f"{path}{inner[0]}.")

    walk(schema, "")
    return rows


def _cell(text: str) -> str:
    """One table cell: ``literal`` as code; outside code, Markdown and HTML are escaped."""
    parts = re.sub(r"``([^`]+?)``", r"`\1`", " ".join(text.split())).split("`")
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        parts[i] = html.escape(parts[i], quote=False).replace("*", "\\*").replace("_", "\\_")
    return "`".join(parts).replace("|", "\\|")


def _is_section(schema: dict[str, Any], key: str) -> bool:
    """Whether a top-level key holds keys of its own (``data``, ``release``, ...)."""
    return _children(schema["properties"][key], schema.get("$defs", {})) is not None


def schema_page(schema: dict[str, Any]) -> str:
    """The Markdown of the pipeline-schema page."""
    lines = [
        "# Pipeline file schema",
        "",
        "Generated at build time from `bastion.pipeline_schema()`, the same JSON Schema that",
        "`bastion schema` prints; the loader rejects any key not listed here.",
        "`<name>` stands for a key you choose (a source, a column, a gate); `[]` for each",
        "item of a list. Writing a file from scratch:",
        "[your own data set](../how-to/own-dataset.md).",
        "",
    ]
    section = None
    for path, kind, default, about in schema_rows(schema):
        top = path.split(".", 1)[0] if "." in path or _is_section(schema, path) else ""
        if top != section:  # one table per top-level section, the plain keys first
            section = top
            title = f"`{top}`" if top else "Top level"
            lines += ["", f"## {title}", "", "| key | type | default | description |"]
            lines.append("|---|---|---|---|")
        lines.append(
            f"| `{path}` | {_cell(kind)} | `{default}` | {_cell(about)} |"
            if default and default != "required"
            else f"| `{path}` | {_cell(kind)} | {default} | {_cell(about)} |"
        )
    lines += [
        "",
        "## The JSON Schema",
        "",
        "```json",
        json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False),
        "```",
        "",
    ]
    return "\n".join(lines)
