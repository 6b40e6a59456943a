"""``bastion data``: screen and check data files outside a pipeline.

These commands read a local file and print; they open no workspace (no passphrase, no
token), store nothing and write no audit entry — inside a pipeline the same screen runs as
the ``screen.<source>`` stage, stored, signed and audited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli import _common as c

data_app = typer.Typer(help="Screen and check data files.", no_args_is_help=True)

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

FileArg = Annotated[Path, typer.Argument(help="A CSV or Parquet file (by its suffix).")]
Delimiter = Annotated[str, typer.Option("--delimiter", help="CSV field delimiter.")]
NaValue = Annotated[
    list[str] | None, typer.Option("--na-value", help="Also read this string as null (repeat).")
]
SkipSpace = Annotated[
    bool, typer.Option("--skip-initial-space", help="Strip spaces after each delimiter.")
]
Budget = Annotated[
    str,
    typer.Option("--memory-budget", help="Refuse files bigger than this in memory, e.g. 4G."),
]


@data_app.command("screen")
def screen(
    file: FileArg,
    label: Annotated[str, typer.Option("--label", help="The label column.")],
    positive: Annotated[
        str | None, typer.Option("--positive", help="The positive class (for shift).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Take data.screen (thresholds, policies) from a pipeline."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="A reference file of the same data, to measure shift."),
    ] = None,
    unsafe_skip: Annotated[
        list[str] | None, typer.Option("--unsafe-skip", help="Do not run this detector (repeat).")
    ] = None,
    delimiter: Delimiter = ",",
    na_value: NaValue = None,
    skip_initial_space: SkipSpace = False,
    memory_budget: Budget = "8G",
    seed: Annotated[int, typer.Option(help="Seed of the cross-validation.")] = 0,
    show_values: Annotated[
        list[str] | None,
        typer.Option(
            "--show-values",
            help="Print this column's values in findings (repeat); all others are masked.",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Also exit 1 when a row would be quarantined or personal data is found"
            " (findings whose policy is fail always exit 1).",
        ),
    ] = False,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Run the poisoning screen (and a PII scan) over FILE; findings name 0-based data rows."""
    import logging

    import bastion

    cfg = bastion.screen_config(config, unsafe_skip=unsafe_skip or [])
    for skipped in cfg.unsafe_skip:
        logging.getLogger("bastion.cli").warning("unsafe: detector %s not run", skipped)
    with c.progress() as bar:
        task = bar.add_task("reading", total=None)  # steps depend on what is skipped

        def step(name: str) -> None:
            bar.update(task, description=name)

        result = bastion.screen_file(
            file,
            label=label,
            positive=positive,
            config=cfg,
            baseline=baseline,
            csv=_csv(delimiter, na_value, skip_initial_space),
            memory_budget=_bytes(memory_budget),
            seed=seed,
            progress=step,
            show_values=show_values or (),
        )
    doc: dict[str, Any] = {"file": str(file)}
    doc.update(result.to_json(all_findings=True))
    # as in a pipeline, a finding whose policy is ``fail`` fails; --strict also fails on
    # rows that would be quarantined and on personal data (undeclared, it fails a pipeline)
    failed = bool(result.failing()) or (
        strict
        and (
            bool(result.pii)
            or any(
                f.row is not None and result.policies[f.detector] == "quarantine"
                for f in result.findings
            )
        )
    )
    doc["ok"] = not failed
    if json_out:
        c.emit(doc)
    else:
        _print(doc)
    if failed:
        raise typer.Exit(1)


@data_app.command("check")
def check(
    file: FileArg,
    pipeline: Annotated[
        Path, typer.Option("--pipeline", help="The pipeline file whose schema and checks apply.")
    ],
    source: Annotated[
        str | None, typer.Option("--source", help="Which data source (if it has several).")
    ] = None,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1_000, help="Rows read at a time.")
    ] = 200_000,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Stream FILE through every declared check, in constant memory; exit 1 on violations."""
    import bastion

    found = bastion.check_file(file, pipeline, source=source, chunk_rows=chunk_rows)
    if json_out:
        c.emit(found.to_json())
    else:
        out = c.console()
        out.print(
            f"{file}: {found.rows} rows in {found.chunks} chunk(s); {len(found.checks_run)}"
            f" checks run; {found.total} violation(s) in {found.bad_rows} row(s)",
            markup=False,
        )
        for v in found.violations[:20]:
            out.print(f"  {v.describe()}", markup=False)
    if not found.ok:
        raise typer.Exit(1)


def _csv(delimiter: str, na: list[str] | None, skip_space: bool) -> dict[str, Any]:
    return {"delimiter": delimiter, "na_values": na or [], "skip_initial_space": skip_space}


def _bytes(text: str) -> int:
    from bastion.errors import ConfigError

    t = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise ConfigError(f"--memory-budget {text!r}: expected a size such as 512M or 4G") from None
    if value <= 0:
        raise ConfigError(f"--memory-budget {text!r}: expected a positive size")
    return int(value * _UNITS[unit])


def _print(doc: dict[str, Any]) -> None:
    from rich.table import Table

    out = c.console()
    out.print(
        f"{doc['file']}: {doc['rows']} rows;"
        f" {doc['rows_flagged']} rows with findings, {doc['rows_quarantined']} would be"
        f" quarantined; detectors run: {', '.join(doc['ran'])}"
        + (f"; not run: {', '.join(doc['skipped'])}" if doc["skipped"] else ""),
        markup=False,
    )
    table = Table("detector", "reason", "rows", "policy")
    for det, reasons in doc["counts"].items():
        for reason, k in (reasons or {"(none)": 0}).items():
            table.add_row(c.esc(det), c.esc(reason), str(k), c.esc(doc["policies"][det]))
    out.print(table)
    for hit in doc.get("pii") or []:
        out.print(
            f"personal data: column {hit['column']!r} looks like {hit['pattern']}"
            f" ({hit['fraction']:.0%} of values; e.g. {', '.join(hit['examples'][:3])})",
            markup=False,
        )
    for t in doc.get("triggers") or []:
        out.print(
            f"suspected trigger: {t['column']}={t['value']!r} → {t['label']!r} in"
            f" {t['observed']} of {t['rows']} rows (features predict {t['expected']})",
            markup=False,
        )
    examples = [f for fs in doc["examples"].values() for f in fs]
    if examples:
        ex = Table("row", "detector", "reason", "score", "detail", title="strongest findings")
        for f in examples:
            ex.add_row(
                str(f["row"]),
                c.esc(f["detector"]),
                c.esc(f["reason"]),
                f"{f['score']:.3g}",
                c.esc(f["detail"]),
            )
        out.print(ex)
