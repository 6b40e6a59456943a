"""Data checks: Bastion's ``validate_table`` against pandera on pandas, same frame, same checks.

One process, one seeded frame of ``--rows`` rows (default 1,000,000), typed as a user's
DataFrame is: ``int64`` and ``float64`` numbers, pandas ``str`` text (``--strings object`` or
``category`` for the other common text dtypes). Ten declared checks:

1. ``id`` unique;
2-6. ranges on ``age`` [17, 90], ``hours`` [1, 99], ``capital_gain`` [0, 99999],
     ``capital_loss`` [0, 4356] and ``score`` [0, 1] (``score`` is nullable, 1% null);
7-8. categories of ``color`` (4 values) and ``label`` (2 values);
9-10. two custom row rules: ``capital_gain == 0 or capital_loss == 0`` and
      ``hours <= 80 or age < 70``.

On top of these both tools check every column's type and that the non-nullable ones hold
no null (Bastion also judges the label's two classes). Both run lazily: every check over
every row, every failure collected. A few rows are broken on purpose (an age of 200, a
repeated id, an unknown color, a row with both gain and loss, ...) and each side must
report exactly those rows, so neither wins by skipping work. Best of ``--repeat`` runs each,
alternating.

Pass: both report exactly the broken rows, Bastion is faster than pandera and, from 1M rows
up, checks >= 2,000,000 rows/s.

    python benchmarks/bench_checks.py [--rows 1000000] [--repeat 3] [--strings str] [--smoke]

``--smoke``: 20,000 rows, one run, speed not judged; both sides must still report exactly
the broken rows. Exit code 0 on PASS, 1 on FAIL.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from bastion.pipeline.config import DataConfig
from bastion.stages.validate import validate_table

GOAL_ROWS_PER_S = 2_000_000
COLORS = ["red", "green", "blue", "black"]
RANGES = {
    "age": (17, 90),
    "hours": (1, 99),
    "capital_gain": (0, 99999),
    "capital_loss": (0, 4356),
    "score": (0, 1),
}


def build(rows: int, seed: int = 0) -> tuple[pd.DataFrame, set[int]]:
    """The frame and the row numbers broken on purpose."""
    rng = np.random.default_rng(seed)
    gain = np.where(rng.random(rows) < 0.92, 0, rng.integers(1, 99_999, rows))
    loss = np.where((gain == 0) & (rng.random(rows) < 0.05), rng.integers(1, 4_356, rows), 0)
    age = rng.integers(17, 91, rows)
    hours = rng.integers(1, 100, rows)
    hours[(age >= 70) & (hours > 80)] = 40
    frame = pd.DataFrame(
        {
            "id": rng.permutation(rows).astype("int64"),
            "age": age.astype("int64"),
            "hours": hours.astype("int64"),
            "capital_gain": gain.astype("int64"),
            "capital_loss": loss.astype("int64"),
            "score": np.where(rng.random(rows) < 0.01, np.nan, rng.random(rows)),
            "color": pd.Series(rng.choice(COLORS, rows), dtype="str"),
            "label": pd.Series(rng.choice(["<=50K", ">50K"], rows, p=[0.76, 0.24]), dtype="str"),
        }
    )
    step = max(rows // 16, 1)
    at = [min(i * step + 3, rows - 1) for i in range(1, 9)]
    frame.loc[at[0], "age"] = 200
    frame.loc[at[1], "hours"] = 0
    frame.loc[at[2], "score"] = 1.5
    frame.loc[at[3], "id"] = frame.loc[0, "id"]
    frame.loc[at[4], "color"] = "purple"
    frame.loc[at[5], "label"] = ">50K."
    frame.loc[at[6], ["capital_gain", "capital_loss"]] = [7_000, 300]
    frame.loc[at[7], ["age", "hours"]] = [75, 90]
    return frame, set(at)


def bastion_config() -> DataConfig:
    schema: dict[str, dict[str, object]] = {"id": {"type": "int", "unique": True}}
    for col, (lo, hi) in RANGES.items():
        kind = "float" if col == "score" else "int"
        schema[col] = {"type": kind, "min": lo, "max": hi, "nullable": col == "score"}
    schema["color"] = {"type": "category", "categories": COLORS}
    schema["label"] = {"type": "category", "categories": ["<=50K", ">50K"]}
    return DataConfig.model_validate(
        {
            "sources": {"s": {"format": "parquet", "path": "s.parquet", "sha256": "0" * 64}},
            "schema": schema,
            "label": {"column": "label", "positive": ">50K"},
            "checks": [
                {"name": "gain_or_loss", "expr": "capital_gain == 0 or capital_loss == 0"},
                {"name": "elderly_overtime", "expr": "hours <= 80 or age < 70"},
            ],
            "validation": {"policy": "quarantine"},
        }
    )


def run_bastion(frame: pd.DataFrame, config: DataConfig) -> set[int]:
    found = validate_table(frame, config)
    return {int(i) for i in np.flatnonzero(found.bad)}


def pandera_schema() -> object:
    import pandera.pandas as pa

    columns = {"id": pa.Column("int64", unique=True, report_duplicates="exclude_first")}
    for col, (lo, hi) in RANGES.items():
        kind = "float64" if col == "score" else "int64"
        columns[col] = pa.Column(kind, pa.Check.in_range(lo, hi), nullable=col == "score")
    columns["color"] = pa.Column(str, pa.Check.isin(COLORS))
    columns["label"] = pa.Column(str, pa.Check.isin(["<=50K", ">50K"]))
    return pa.DataFrameSchema(
        columns,
        checks=[
            pa.Check(lambda d: (d["capital_gain"] == 0) | (d["capital_loss"] == 0)),
            pa.Check(lambda d: (d["hours"] <= 80) | (d["age"] < 70)),
        ],
    )


def run_pandera(frame: pd.DataFrame, schema: object) -> set[int]:
    import pandera.pandas as pa

    try:
        schema.validate(frame, lazy=True)  # type: ignore[attr-defined]
    except pa.errors.SchemaErrors as exc:
        return {int(i) for i in exc.failure_cases["index"].dropna()}
    return set()


def best_of(repeat: int, fn: Callable[[], set[int]]) -> tuple[float, set[int]]:
    best, rows = float("inf"), set()
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = fn()
        best = min(best, time.perf_counter() - t0)
    return best, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--strings",
        choices=["str", "object", "category"],
        default="str",
        help="dtype of the text columns (str: pandas 3's default)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, speed not judged (CI: does it run?)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.repeat = 20_000, 1
    if args.rows < 100 or args.repeat < 1:
        parser.error("--rows: at least 100; --repeat: at least 1")
    warnings.filterwarnings("ignore")
    frame, broken = build(args.rows)
    frame = frame.astype({"color": args.strings, "label": args.strings})
    config, schema = bastion_config(), pandera_schema()
    run_bastion(frame.head(1000), config)  # imports and first-call costs out of the timing
    run_pandera(frame.head(1000), schema)
    b_times: list[float] = []
    p_times: list[float] = []
    b_rows: set[int] = set()
    p_rows: set[int] = set()
    for _ in range(args.repeat):  # alternate, so drift on a shared machine hits both
        t, b_rows = best_of(1, lambda: run_bastion(frame, config))
        b_times.append(t)
        t, p_rows = best_of(1, lambda: run_pandera(frame, schema))
        p_times.append(t)
    b_s, p_s = min(b_times), min(p_times)
    b_rate, p_rate = args.rows / b_s, args.rows / p_s
    same = b_rows == p_rows == broken
    fast = b_rate >= GOAL_ROWS_PER_S or args.rows < 1_000_000  # the goal is for 1M rows
    ok = same and fast and b_rate > p_rate
    print(
        f"rows                 {args.rows:,}; 10 declared checks; text as {args.strings};"
        f" best of {args.repeat}"
    )
    print(f"bastion validate     {b_s:7.3f} s  {b_rate:13,.0f} rows/s")
    print(f"pandera (pandas)     {p_s:7.3f} s  {p_rate:13,.0f} rows/s")
    print(
        f"ratio bastion/pand.  {b_rate / p_rate:7.2f}x   (need > 1, and >= {GOAL_ROWS_PER_S:,}/s)"
    )
    print(
        f"broken rows found    bastion {len(b_rows)}, pandera {len(p_rows)}, seeded {len(broken)}"
    )
    if not same:
        print(
            f"  MISMATCH: bastion-only {sorted(b_rows - broken)[:5]},"
            f" missed {sorted(broken - b_rows)[:5]}; pandera-only"
            f" {sorted(p_rows - broken)[:5]}, missed {sorted(broken - p_rows)[:5]}"
        )
    if args.smoke:
        print("smoke: goals not judged" if same else "FAIL: the broken rows differ")
        sys.exit(0 if same else 1)
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
