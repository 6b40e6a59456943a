"""bastion.io.stream and bastion.stages.file_check: bad files are one clear DataError naming
the file and line, never a crash or a silent misread; streamed checks equal whole-table
checks, in constant memory."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import ConfigError, DataError
from bastion.io.stream import Format, estimate_memory, iter_chunks, read_table
from bastion.spec.config import CsvOptions, DataConfig, SourceConfig
from bastion.spec.stage import StageContext
from bastion.stages.file_check import FileCheck, _HashSet, check_file
from bastion.stages.ingest import IngestStage
from bastion.stages.validate import validate_table


def write(tmp_path: Path, data: bytes, name: str = "d.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read(path: Path, **kw: Any) -> pd.DataFrame:
    return read_table(path, format="csv", **kw)


# -- bad input: each a clear error ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file: expected a header line and data rows"),
        (b"\n\n\n", "empty file: expected a header line and data rows"),
        (b"a,b,c\n", "no data rows after the header"),
        (b"a,b,c\n\n", "no data rows after the header"),
        (
            b"a;b;c\n1;2;3\n",
            "the header is one column ('a;b;c') holding 2 semicolon(s): the file looks"
            ' semicolon-delimited, not comma-delimited; set csv: {delimiter: ";"} on the source',
        ),
        (b"a\tb\n1\t2\n", 'looks tab-delimited, not comma-delimited; set csv: {delimiter: "\\t"}'),
        (b"a|b|c|d\n1|2|3|4\n", "looks pipe-delimited"),
        (b"a,b\n1,2\n3,4,5\n", "line 3: expected 2 fields, found 3"),
        (b"a,b\n1,2\n\n3,4\n5,6,7,8\n", "line 5: expected 2 fields, found 4"),
        (b"a,b\n1,caf\xe9\n", "line 2: not valid utf-8 at byte offset 9"),
        (b"a,b\n1,2\n" * 3 + b"x,\xff\xfe\n", "line 7: not valid utf-8 at byte offset 26"),
    ],
)
def test_bad_csv_is_one_clear_error_naming_the_file(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = write(tmp_path, data)
    with pytest.raises(DataError) as info:
        read(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_a_ragged_row_names_its_line(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(15))
    rows = [",".join(str(i) for i in range(15))] * 15 + [",".join(str(i) for i in range(16))]
    path = write(tmp_path, ("\n".join([header, *rows]) + "\n").encode())
    with pytest.raises(DataError, match=r"d\.csv: line 17: expected 15 fields, found 16$"):
        read(path)
    with pytest.raises(DataError, match="line 17: expected 15 fields, found 16"):
        list(iter_chunks(path, format="csv", chunk_rows=4))


def test_a_row_wider_than_the_header_never_shifts_the_columns(tmp_path: Path) -> None:
    """pandas would take the first field as an index and shift every column left."""
    path = write(tmp_path, b"age,label\n39,no,extra\n50,yes,extra\n")
    with pytest.raises(DataError, match="line 2: expected 2 fields, found 3"):
        read(path)


def test_a_short_row_reads_as_nulls_that_validation_reports(tmp_path: Path) -> None:
    path = write(tmp_path, b"age,label\n39,no\n50\n40,yes\n")
    table = read(path)
    assert table["label"].isna().tolist() == [False, True, False]
    found = validate_table(table, small_config())
    assert [(v.row, v.column, v.check) for v in found.violations] == [(1, "label", "null")]


def test_unknown_encoding_and_missing_files_are_config_errors(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b\n1,2\n")
    for budget in (None, 1 << 30):
        with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
            read(path, csv=CsvOptions(encoding="klingon"), memory_budget=budget)
    with pytest.raises(ConfigError, match=r"file not found: .*gone\.csv"):
        read(tmp_path / "gone.csv")
    with pytest.raises(ConfigError, match="not a regular file"):
        read(tmp_path)


def test_other_encodings_and_delimiters_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, "a;b\n1;café\n".encode("latin-1"))
    table = read(path, csv=CsvOptions(delimiter=";", encoding="latin-1"))
    assert table.to_dict("list") == {"a": ["1"], "b": ["café"]}


def test_a_file_over_the_memory_budget_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b\n" + b"12345,67890\n" * 10_000)
    need = estimate_memory(path, format="csv")
    assert need > path.stat().st_size
    with pytest.raises(DataError) as info:
        read(path, memory_budget=100 * 1024)
    msg = str(info.value)
    assert msg.startswith(f"{path} is 117.2 KiB on disk, about ")
    assert "over the memory budget of 100.0 KiB: check it with check_file" in msg
    assert len(read(path, memory_budget=need)) == 10_000


def test_nan_infinities_and_mixed_types_are_data_reported_by_row_and_column(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, b"age,label\n39,no\nNaN,yes\ninf,no\n-inf,yes\nforty,no\n1e3,yes\n")
    table = read(path)
    assert table["age"].tolist() == ["39", "NaN", "inf", "-inf", "forty", "1e3"]
    found = validate_table(table, small_config())
    assert [(v.row, v.column, v.check, v.value) for v in found.violations if v.row] == [
        (1, "age", "type", "NaN"),
        (2, "age", "type", "inf"),
        (3, "age", "type", "-inf"),
        (4, "age", "type", "forty"),
        (5, "age", "type", "1e3"),
    ]
    floats = small_config(age={"type": "float", "nullable": True})
    found = validate_table(table, floats)
    assert [(v.row, v.check, v.value) for v in found.violations if v.row] == [
        (1, "type", "NaN"),
        (2, "type", "inf"),
        (3, "type", "-inf"),
        (4, "type", "forty"),
    ]  # 1e3 is a float


def test_bad_parquet_is_one_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, b"PAR1 not really", "d.parquet")
    with pytest.raises(DataError, match=r"d\.parquet: not a Parquet file: "):
        read_table(path, format="parquet")
    empty = tmp_path / "e.parquet"
    pd.DataFrame({"age": pd.Series([], dtype="int64")}).to_parquet(empty)
    with pytest.raises(DataError, match=r"e\.parquet: no data rows"):
        read_table(empty, format="parquet")
    with pytest.raises(DataError, match="empty file"):
        read_table(write(tmp_path, b"", "z.parquet"), format="parquet")


def test_parquet_nan_is_null_and_infinities_are_type_violations(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    frame = pd.DataFrame(
        {"age": [1.0, np.nan, np.inf, -np.inf, 2.0], "label": ["no", "yes", "no", "yes", "yes"]}
    )
    frame.to_parquet(path)
    table = read_table(path, format="parquet")
    found = validate_table(table, small_config(age={"type": "float"}))
    assert [(v.row, v.check) for v in found.violations] == [(1, "null"), (2, "type"), (3, "type")]


def test_ingest_uses_the_same_checks(tmp_path: Path, ctx: Callable[..., StageContext]) -> None:
    for data, message in (
        (b"a,b\n", "no data rows after the header"),
        (b"a;b\n1;2\n", "looks semicolon-delimited"),
        (b"a,b\n1,2,3\n", "line 2: expected 2 fields, found 3"),
    ):
        write(tmp_path, data)
        pin = hashlib.sha256(data).hexdigest()
        src = SourceConfig(format="csv", path="d.csv", sha256=pin)
        with pytest.raises(DataError) as info:
            IngestStage("train", src).run(ctx(), {})
        assert str(info.value).startswith("source 'train': cannot read the csv file d.csv: ")
        assert message in str(info.value)


# -- streaming -----------------------------------------------------------------------------


def small_config(checks: list[dict[str, Any]] | None = None, **schema: Any) -> DataConfig:
    return DataConfig.model_validate(
        {
            "sources": {"s": {"format": "csv", "path": "s.csv", "sha256": "0" * 64}},
            "schema": {
                "age": {"type": "int", "min": 0, "max": 120},
                "label": {"type": "category", "categories": ["no", "yes"]},
                **schema,
            },
            "label": {"column": "label", "positive": "yes"},
            "checks": checks or [],
            "show_values": ["age", "label", *schema],  # values shown: these test the checks
        }
    )


def people(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": rng.permutation(n).astype(str),
            "age": rng.integers(0, 80, n).astype(str),
            "score": rng.random(n).round(3).astype(str),
            "color": rng.choice(["red", "green"], n),
            "label": rng.choice(["no", "yes"], n),
        }
    )
    frame.loc[n - 3, "id"] = frame.loc[2, "id"]  # a repeat far from its first
    frame.loc[n // 2, "age"] = "150"
    frame.loc[n // 2 + 1, "score"] = "nan"
    frame.loc[7, "color"] = "blue"
    frame.loc[n - 1, ["age", "score"]] = ["90", "0.1"]  # the custom rule
    return frame


PEOPLE = {
    "id": {"type": "int", "unique": True},
    "score": {"type": "float", "min": 0, "max": 1},
    "color": {"type": "category", "categories": ["red", "green"]},
}
RULE = [{"name": "old_scores", "expr": "age < 80 or score > 0.5", "message": "high score"}]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_check_file_equals_checking_the_whole_table(tmp_path: Path, fmt: Format) -> None:
    frame = people(1_000)
    path = tmp_path / f"p.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    data = small_config(RULE, **PEOPLE)
    whole = validate_table(read_table(path, format=fmt), data)
    streamed = check_file(path, data, format=fmt, chunk_rows=128)
    assert isinstance(streamed, FileCheck) and streamed.chunks == 8 and streamed.rows == 1_000
    assert streamed.counts == whole.counts and streamed.total == whole.total == 5
    assert streamed.by_column == whole.by_column
    assert streamed.violations == whole.violations
    assert [(v.row, v.check) for v in streamed.violations] == [
        (7, "category"),
        (500, "range"),
        (501, "type"),
        (997, "unique"),
        (999, "custom:old_scores"),
    ]
    assert streamed.classes == whole.classes and streamed.bad_rows == int(whole.bad.sum())
    assert streamed.checks_run == whole.checks_run and streamed.checks_skipped == []
    assert not streamed.ok
    assert streamed.to_json()["checks_run"][0] == ["*", "duplicate_column"]


def test_iter_chunks_number_rows_across_the_file(tmp_path: Path) -> None:
    frame = people(250)
    csv_path, pq_path = tmp_path / "p.csv", tmp_path / "p.parquet"
    frame.to_csv(csv_path, index=False)
    frame.to_parquet(pq_path, index=False)
    files: tuple[tuple[Path, Format], ...] = ((csv_path, "csv"), (pq_path, "parquet"))
    for path, fmt in files:
        chunks = list(iter_chunks(path, format=fmt, chunk_rows=100))
        assert [len(c) for c in chunks] == [100, 100, 50]
        assert [c.index[0] for c in chunks] == [0, 100, 200]
        joined = pd.concat(chunks)
        assert joined.astype(str).equals(read_table(path, format=fmt).astype(str))
    with pytest.raises(ConfigError, match="chunk_rows"):
        iter_chunks(csv_path, format="csv", chunk_rows=0)


def test_label_classes_are_judged_over_the_whole_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"age,label\n" + b"1,no\n" * 50 + b"2,yes\n" * 50)
    assert check_file(path, small_config(), format="csv", chunk_rows=10).ok
    path = write(tmp_path, b"age,label\n" + b"1,no\n" * 50)
    found = check_file(path, small_config(), format="csv", chunk_rows=10)
    assert found.counts["label_classes"] == 1 and found.total == 1
    assert found.violations[0].describe() == (
        "column label: label_classes: exactly two classes including 'yes' (found 'no')"
    )


def test_table_level_findings_are_counted_once_and_skips_are_listed(tmp_path: Path) -> None:
    path = write(tmp_path, b"age,label,ssn\n" + b"1,no,x\n2,yes,y\n" * 20)
    found = check_file(path, small_config(RULE, **PEOPLE), format="csv", chunk_rows=7)
    assert found.counts["extra_column"] == 1 and found.counts["missing_column"] == 3
    assert found.total == 4
    assert ("id", "unique", "the column is missing") in found.checks_skipped
    assert ("age, score", "custom:old_scores") in [c[:2] for c in found.checks_skipped]


def test_check_file_lists_at_most_limit_violations(tmp_path: Path) -> None:
    path = write(tmp_path, b"age,label\n" + b"200,no\n5,yes\n5,no\n" * 100)
    found = check_file(path, small_config(), format="csv", chunk_rows=30, limit=7)
    assert found.total == 100 and len(found.violations) == 7
    assert [v.row for v in found.violations] == list(range(0, 21, 3))


@pytest.mark.slow
def test_streaming_memory_stays_far_below_reading_the_file_whole(tmp_path: Path) -> None:
    rows = 600_000
    rng = np.random.default_rng(3)
    path = tmp_path / "big.csv"
    pd.DataFrame(
        {
            "id": rng.permutation(rows),
            "age": rng.integers(0, 80, rows),
            "score": rng.random(rows).round(4),
            "color": rng.choice(["red", "green"], rows),
            "label": rng.choice(["no", "yes"], rows),
        }
    ).to_csv(path, index=False)
    data = small_config(RULE, **PEOPLE)

    def peak(fn: Callable[[], int]) -> tuple[int, int]:
        tracemalloc.start()
        try:
            found = fn()
            return tracemalloc.get_traced_memory()[1], found
        finally:
            tracemalloc.stop()

    whole, whole_total = peak(lambda: validate_table(read(path), data).total)
    streamed, streamed_total = peak(
        lambda: check_file(path, data, format="csv", chunk_rows=50_000).total
    )
    assert whole_total == streamed_total == 0
    # measured here: whole ~53 MiB, streamed ~12 MiB, of which 4.6 MiB are the id hashes
    assert streamed < 0.4 * whole, (streamed, whole)


# -- the hash set behind `unique` ----------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2**64 - 1), max_size=40), max_size=12))
def test_the_hash_set_behaves_like_a_set(batches: list[list[int]]) -> None:
    mine, reference = _HashSet(), set()
    for batch in batches:
        hashes = np.array(batch, dtype=np.uint64)
        assert mine.contains(hashes).tolist() == [h in reference for h in batch]
        new = np.unique(hashes[~mine.contains(hashes)])
        mine.add(new)
        reference.update(batch)
    assert mine.nbytes == 8 * len(reference)
    assert all(len(a) > 0 for a in mine.levels)


# -- fuzz: any bytes are a frame or one clear error ----------------------------------------

CSVISH = st.lists(
    st.sampled_from([b"a", b"b", b",", b";", b"\t", b"|", b"\n", b'"', b"1", b"-2.5", b"nan"])
    | st.sampled_from([b"inf", b"\xff", b"\xc3", b"\xa9", b" ", b"\r\n", b"yes", b"no", b"\x00"]),
    max_size=40,
).map(b"".join)


@settings(max_examples=150, deadline=None)
@given(st.one_of(CSVISH, st.binary(max_size=60)))
def test_any_bytes_read_as_a_frame_or_one_clear_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.csv"
    path.write_bytes(data)
    formats: tuple[Format, ...] = ("csv", "parquet")
    for fmt in formats:
        try:
            table = read_table(path, format=fmt)
        except DataError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
            continue
        assert len(table) > 0
        validate_table(table, small_config())  # findings, never a crash
