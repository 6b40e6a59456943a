"""Check a data file chunk by chunk, in constant memory: the validate stage's checks over a
streamed file (:mod:`bastion.io.stream` reads it). Not a stage: ``bastion data check``
calls it.

:func:`check_file` runs every check of :func:`~bastion.stages.validate.validate_table`
over the chunks: row numbers are those of the whole file, ``unique`` holds across chunks
and the label's classes are judged over the whole file. Its memory does not grow with
the rows, except for ``unique`` columns: each keeps an 8-byte hash of every distinct value
seen (sorted numpy arrays; briefly 16 bytes while two of them merge), so 100 million
distinct ids take about 800 MB. Two different values share a 64-bit hash with
probability about n²/2⁶⁵ (n distinct values; 3·10⁻⁶ for ten million): such a pair would
be reported as a repeat.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bastion.io.stream import Format, iter_chunks
from bastion.spec.expr import compile_check
from bastion.stages.validate import CHECKS, Violation, label_violations, validate_frame

if TYPE_CHECKING:
    from bastion.spec.config import CsvOptions, DataConfig

__all__ = ["FileCheck", "check_file"]

_TABLE_CHECKS = frozenset(CHECKS[:4])


@dataclass(frozen=True)
class FileCheck:
    """What :func:`check_file` found over a whole file; nothing here decides pass or fail."""

    path: str
    rows: int  # data rows read
    chunks: int
    bad_rows: int  # rows that broke at least one row-level check
    total: int  # every violation, listed or not
    counts: dict[str, int]  # per check: every check of CHECKS and custom:<name>
    by_column: dict[str, dict[str, int]]
    violations: list[Violation]  # table-level first, then by row; at most `limit`
    checks_run: list[tuple[str, str]]  # (column, check), as Findings.checks_run
    checks_skipped: list[tuple[str, str, str]]  # (column, check, why)
    classes: dict[str, int]  # label values of the good rows, whole file

    @property
    def ok(self) -> bool:
        """No violation at all."""
        return self.total == 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        found = asdict(self)
        found["checks_run"] = [list(c) for c in self.checks_run]
        found["checks_skipped"] = [list(c) for c in self.checks_skipped]
        return found


def check_file(
    path: Path,
    data: DataConfig,
    *,
    format: Format,
    csv: CsvOptions | None = None,
    chunk_rows: int = 200_000,
    limit: int = 50,
) -> FileCheck:
    """Run every check of ``data`` over ``path`` chunk by chunk (see the module docstring)."""
    checks = [compile_check(c, data.schema_) for c in data.checks]
    seen = _Seen()
    rows = chunks = bad_rows = 0
    counts: dict[str, int] = {}
    by_column: dict[str, dict[str, int]] = {}
    table_level: list[Violation] = []
    row_level: list[Violation] = []
    classes: Counter[str] = Counter()
    run: list[tuple[str, str]] = []
    skipped: list[tuple[str, str, str]] = []
    for chunk in iter_chunks(path, format=format, csv=csv, chunk_rows=chunk_rows):
        found = validate_frame(
            chunk.reset_index(drop=True),
            data,
            checks,
            limit=limit,
            repeats=seen.repeats,
            judge_label=False,
            with_reasons=False,
        )
        if not chunks:
            table_level = list(found.table_level)
            run, skipped = found.checks_run, found.checks_skipped
            counts = dict.fromkeys(found.counts, 0)
        for check, k in found.counts.items():
            if check not in _TABLE_CHECKS:
                counts[check] += k
        for col, per_check in found.by_column.items():
            for check, k in per_check.items():
                if check not in _TABLE_CHECKS:
                    mine = by_column.setdefault(col, {})
                    mine[check] = mine.get(check, 0) + k
        room = limit - len(row_level)
        if room > 0:
            row_level += [
                replace(v, row=v.row + rows) for v in found.violations if v.row is not None
            ][:room]
        bad_rows += int(np.count_nonzero(found.bad))
        classes.update(found.classes)
        rows += len(chunk)
        chunks += 1
    label = data.label.column
    whole = dict(sorted(classes.items()))
    if (label, "label_classes") in run:
        table_level += label_violations(whole, data)
    for v in table_level:
        counts[v.check] += 1
        mine = by_column.setdefault(v.column, {})
        mine[v.check] = mine.get(v.check, 0) + 1
    return FileCheck(
        path=str(path),
        rows=rows,
        chunks=chunks,
        bad_rows=bad_rows,
        total=sum(counts.values()),
        counts=counts,
        by_column=by_column,
        violations=(table_level + row_level)[:limit],
        checks_run=run,
        checks_skipped=skipped,
        classes=whole,
    )


class _HashSet:
    """A set of uint64 hashes: sorted levels, merged like a binary counter (8 B each)."""

    def __init__(self) -> None:
        self.levels: list[np.ndarray] = []

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hashes), dtype=bool)
        for level in self.levels:
            at = np.minimum(np.searchsorted(level, hashes), len(level) - 1)
            found |= level[at] == hashes
        return found

    def add(self, new: np.ndarray) -> None:
        """Add sorted, distinct hashes that are not in the set yet."""
        if not len(new):
            return
        self.levels.append(new)
        while len(self.levels) > 1 and len(self.levels[-2]) <= 2 * len(self.levels[-1]):
            top, below = self.levels.pop(), self.levels.pop()
            self.levels.append(np.sort(np.concatenate((below, top)), kind="stable"))

    @property
    def nbytes(self) -> int:
        return sum(level.nbytes for level in self.levels)


class _Seen:
    """``repeats`` for ``unique`` across chunks: one :class:`_HashSet` per column."""

    def __init__(self) -> None:
        self.sets: dict[str, _HashSet] = {}

    def repeats(self, column: str, values: pd.Series) -> np.ndarray:
        present = values.notna().to_numpy(dtype=bool)
        kept = values[present]
        if pd.api.types.is_float_dtype(kept.dtype):
            kept = kept + 0.0  # -0.0 and 0.0 are one value
        elif isinstance(kept.dtype, pd.CategoricalDtype):
            kept = kept.astype("str")
        hashes = pd.util.hash_pandas_object(kept, index=False).to_numpy(dtype=np.uint64)
        seen = self.sets.setdefault(column, _HashSet())
        repeat = pd.Series(hashes).duplicated().to_numpy() | seen.contains(hashes)
        seen.add(np.unique(hashes[~repeat]))
        found = np.zeros(len(values), dtype=bool)
        found[present] = repeat
        return found


# -- messages ------------------------------------------------------------------------------
