"""Data files outside a pipeline: screen one for poisoning, check one against a schema.

The same code runs inside a pipeline as the ``screen.<source>`` and ``validate.<source>``
stages, where the results are stored encrypted, signed and audited. Here nothing is
stored: these functions read a local file and return findings, for notebooks, scripts and
``bastion data screen`` / ``bastion data check``::

    import bastion
    result = bastion.screen_file("adult.data", label="Y", csv={"skip_initial_space": True,
                                 "na_values": ["?"]})
    for f in result.findings[:5]:
        print(f.row, f.detector, f.reason, f.score)
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bastion.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    from pydantic import BaseModel

    from bastion.defenses.poisoning import PoisoningReport
    from bastion.spec.config import CsvOptions, ScreenConfig
    from bastion.stages.file_check import FileCheck

__all__ = ["check_file", "read_file", "screen_config", "screen_file"]

_M = TypeVar("_M", bound="BaseModel")


def screen_config(
    source: ScreenConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    unsafe_skip: list[str] | tuple[str, ...] = (),
) -> ScreenConfig:
    """A :class:`~bastion.spec.config.ScreenConfig` from a mapping, a pipeline file
    (its ``data.screen``), an existing config, or the defaults; plus detectors to skip."""
    from bastion.spec.config import DETECTORS, ScreenConfig

    for name in unsafe_skip:
        if name not in DETECTORS:
            raise ConfigError(f"unsafe_skip {name!r}: expected one of {', '.join(DETECTORS)}")
    if isinstance(source, str | Path):
        from bastion.spec.loader import load_pipeline

        cfg = load_pipeline(Path(source))[0].data.screen
    else:
        cfg = _model(ScreenConfig, source, "screen config")
    if unsafe_skip:
        cfg = cfg.model_copy(update={"unsafe_skip": sorted({*cfg.unsafe_skip, *unsafe_skip})})
    return cfg


def _csv(csv: CsvOptions | Mapping[str, Any] | None) -> CsvOptions:
    from bastion.spec.config import CsvOptions

    return _model(CsvOptions, csv, "csv options")


def _model(cls: type[_M], given: _M | Mapping[str, Any] | None, what: str) -> _M:
    """``given`` as ``cls``: as it is, or validated from a mapping; ConfigError naming the
    first bad key otherwise."""
    from pydantic import ValidationError

    if isinstance(given, cls):
        return given
    try:
        return cls.model_validate(dict(given or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "value"
        raise ConfigError(f"{what}: {where}: {first['msg']}") from None


def _format(path: Path) -> str:
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"


def read_file(
    path: str | Path,
    *,
    csv: CsvOptions | Mapping[str, Any] | None = None,
    memory_budget: int | None = None,
    numbers: bool = True,
) -> pd.DataFrame:
    """Read a CSV or Parquet file whole (clear errors for empty, header-only, wrong
    delimiter, ragged or over-budget files). With ``numbers``, text columns whose every
    value is a number become numbers; a column of mixed values stays text."""
    import pandas as pd
    from pandas.api import types as ptypes

    from bastion.io.stream import read_table

    p = Path(path)
    fmt = _format(p)
    df = read_table(
        p,
        format=fmt,  # type: ignore[arg-type]
        csv=_csv(csv) if fmt == "csv" else None,
        memory_budget=memory_budget,
    )
    if numbers:
        for col in df.columns:
            s = df[col]
            if ptypes.is_numeric_dtype(s.dtype) or ptypes.is_bool_dtype(s.dtype):
                continue
            num = pd.to_numeric(s, errors="coerce")
            if s.notna().any() and int(num.notna().sum()) == int(s.notna().sum()):
                df[col] = num
    return df


def screen_file(
    path: str | Path,
    *,
    label: str,
    positive: str | None = None,
    config: ScreenConfig | Mapping[str, Any] | str | Path | None = None,
    unsafe_skip: list[str] | tuple[str, ...] = (),
    baseline: str | Path | None = None,
    csv: CsvOptions | Mapping[str, Any] | None = None,
    memory_budget: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    pii: bool = True,
    show_values: Collection[str] = (),
) -> PoisoningReport:
    """Run the poisoning screen over a file. Finding rows are 0-based data rows (the
    header is not a row). ``baseline`` is a reference file of the same data, for shift.
    With ``pii``, the file is also scanned for personal data (``result.pii``: the columns,
    patterns and masked examples). Values in details and triggers are masked unless their
    column is in ``show_values``."""
    from bastion.defenses.poisoning import screen_table
    from bastion.defenses.shift import profile_table

    cfg = screen_config(config, unsafe_skip=unsafe_skip)
    df = read_file(path, csv=csv, memory_budget=memory_budget)
    if label not in df.columns:
        known = ", ".join(map(str, list(df.columns)[:20]))
        raise ConfigError(f"label {label!r}: no such column in {path} (columns: {known})")
    base = None
    if baseline is not None:
        if positive is None:
            raise ConfigError("a shift baseline needs the positive class (positive=...)")
        ref = read_file(baseline, csv=csv, memory_budget=memory_budget)
        base = profile_table(ref, label=label, positive=positive)
    result = screen_table(
        df,
        label=label,
        positive=positive,
        cfg=cfg,
        seed=seed,
        baseline=base,
        progress=progress,
        show_values=show_values,
    )
    if pii:
        from bastion.defenses.pii.scan import scan_table

        result.pii = [hit.to_json() for hit in scan_table(df, seed=seed, skip=(label,))]
    return result


def check_file(
    path: str | Path,
    pipeline: str | Path,
    *,
    source: str | None = None,
    chunk_rows: int = 200_000,
    limit: int = 50,
) -> FileCheck:
    """Stream ``path`` through every check a pipeline file declares for one of its sources
    (the only source, or ``source``), in constant memory; nothing is stored."""
    from bastion.spec.loader import load_pipeline
    from bastion.stages.file_check import check_file as _check

    config = load_pipeline(Path(pipeline))[0]
    sources = config.data.sources
    name = source or (next(iter(sources)) if len(sources) == 1 else None)
    if name is None or name not in sources:
        raise ConfigError(
            f"source {source!r}: expected one of {', '.join(sources)}"
            if source
            else f"{pipeline} has {len(sources)} sources: name one ({', '.join(sources)})"
        )
    spec = sources[name]
    p = Path(path)
    fmt = _format(p)
    return _check(
        p,
        config.data,
        format=fmt,  # type: ignore[arg-type]
        csv=spec.csv if fmt == "csv" else None,
        chunk_rows=chunk_rows,
        limit=limit,
    )
