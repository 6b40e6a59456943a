"""bastion.stages.ingest: pinned sources are read once, verified before parsing, and refused
when swapped; SQL is read-only in intent and never shows a password."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bastion.errors import ConfigError, IntegrityError
from bastion.spec.config import SourceConfig
from bastion.spec.stage import Material, StageContext, decode, encode
from bastion.stages.ingest import (
    IngestStage,
    canonical_rows_sha256,
    check_read_only_query,
    redact_url,
)

CSV = b"""id, name, score, city
1, alice, 0.5, Paris
2, bob, ?, NA
3, ?, 1.25,
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source(**kw: Any) -> SourceConfig:
    return SourceConfig.model_validate(kw)


def csv_source(path: str, pin: str | None, **kw: Any) -> SourceConfig:
    extra = {"sha256": pin} if pin else {"unsafe_unpinned": True}
    return source(
        format="csv",
        path=path,
        csv={"delimiter": ",", "skip_initial_space": True, "na_values": ["?"]},
        **extra,
        **kw,
    )


# -- the stage protocol ----------------------------------------------------------------------


def test_declares_the_protocol_attributes() -> None:
    stage = IngestStage("train", csv_source("a.csv", "0" * 64))
    assert stage.name == "ingest.train"
    assert stage.inputs == {}
    assert stage.outputs == {"table": "table"}
    assert isinstance(stage.version, str)
    assert stage.fingerprint()["sha256"] == "0" * 64


def test_fingerprint_redacts_the_password() -> None:
    stage = IngestStage(
        "db",
        source(format="sql", url="postgresql://u:hunter2@h/d", query="SELECT 1", sha256="0" * 64),
    )
    assert "hunter2" not in repr(stage.fingerprint())


# -- CSV and Parquet -------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path, ctx: Callable[..., StageContext]) -> None:
    (tmp_path / "d.csv").write_bytes(CSV)
    c = ctx()
    table = IngestStage("d", csv_source("d.csv", sha(CSV))).run(c, {})["table"]
    assert list(table.columns) == ["id", "name", "score", "city"]
    assert table["id"].tolist() == ["1", "2", "3"]  # raw text: typing is validate's job
    assert table["name"].isna().tolist() == [False, False, True]  # "?" is null
    assert table["score"].isna().tolist() == [False, True, False]
    assert table.loc[1, "city"] == "NA"  # pandas' default NA words stay strings
    assert pd.isna(table.loc[2, "city"])  # an empty field is null
    assert c.materials == [Material("source:d", sha(CSV), "d.csv")]
    assert decode("table", encode("table", table)).equals(table)


def test_parquet_round_trip(tmp_path: Path, ctx: Callable[..., StageContext]) -> None:
    df = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, None, 2.0], "c": ["x", None, "z"]})
    df.to_parquet(tmp_path / "d.parquet", index=False)
    data = (tmp_path / "d.parquet").read_bytes()
    stage = IngestStage("p", source(format="parquet", path="d.parquet", sha256=sha(data)))
    table = stage.run(ctx(), {})["table"]
    pd.testing.assert_frame_equal(table, df, check_dtype=False)
    assert table["a"].dtype == "int64"


def test_paths_resolve_against_base_dir(tmp_path: Path, ctx: Callable[..., StageContext]) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.csv").write_bytes(CSV)
    table = IngestStage("d", csv_source("d.csv", sha(CSV))).run(ctx(base_dir=tmp_path / "sub"), {})
    assert len(table["table"]) == 3


def test_real_adult_files_are_read_and_pinned(
    adult_dir: Path, adult_config: Any, ctx: Callable[..., StageContext]
) -> None:
    c = ctx(base_dir=adult_dir)
    for name, rows in (("train", 32561), ("test", 16281)):
        table = IngestStage(name, adult_config.data.sources[name]).run(c, {})["table"]
        assert table.shape == (rows, 15)
        assert table.columns[-1] == "Y"
    assert [m.sha256 for m in c.materials] == [
        "a5b3a620cb7325a48f5090531afd611ce4622440451a5cfbd11c49be2ed868e5",
        "0543912af15c52ba12336b042c8f9f96541d6134d9b3d48dba647281fb2b39d1",
    ]


def test_swapped_file_is_refused_with_both_digests(
    tmp_path: Path, ctx: Callable[..., StageContext]
) -> None:
    tampered = CSV.replace(b"0.5", b"9.5")
    (tmp_path / "d.csv").write_bytes(tampered)
    with pytest.raises(IntegrityError) as info:
        IngestStage("train", csv_source("d.csv", sha(CSV))).run(ctx(), {})
    msg = str(info.value)
    assert "'train'" in msg and sha(CSV) in msg and sha(tampered) in msg


def test_missing_file_names_the_path(tmp_path: Path, ctx: Callable[..., StageContext]) -> None:
    with pytest.raises(ConfigError, match=r"source 'train': file not found: .*gone\.csv"):
        IngestStage("train", csv_source("gone.csv", "0" * 64)).run(ctx(), {})


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_without_hanging(tmp_path: Path, ctx: Callable[..., StageContext]) -> None:
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(ConfigError, match="not a regular file"):
        IngestStage("train", csv_source("pipe.csv", "0" * 64)).run(ctx(), {})


def test_malformed_csv_is_a_config_error(tmp_path: Path, ctx: Callable[..., StageContext]) -> None:
    bad = b"a,b\n1,2\n3,4,5,6\n"
    (tmp_path / "d.csv").write_bytes(bad)
    with pytest.raises(ConfigError, match="cannot read the csv file"):
        IngestStage("d", csv_source("d.csv", sha(bad))).run(ctx(), {})


def test_unpinned_source_is_refused_by_the_config_model() -> None:
    with pytest.raises(ValidationError, match="missing 'sha256' pin"):
        source(format="csv", path="d.csv")


def test_unsafe_unpinned_is_accepted_audited_and_logged_each_time(
    tmp_path: Path,
    ctx: Callable[..., StageContext],
    events: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "d.csv").write_bytes(CSV)
    stage = IngestStage("loose", csv_source("d.csv", None))
    with caplog.at_level(logging.WARNING, logger="bastion.stages.ingest"):
        stage.run(ctx(), {})
        stage.run(ctx(), {})
    assert (
        events.events
        == [("ingest.unsafe_unpinned", "ok", {"source": "loose", "sha256": sha(CSV)})] * 2
    )
    assert sum("unpinned" in r.getMessage() for r in caplog.records) == 2


def test_a_set_pin_is_checked_even_with_unsafe_unpinned(
    tmp_path: Path, ctx: Callable[..., StageContext], events: Any
) -> None:
    (tmp_path / "d.csv").write_bytes(CSV)
    stage = IngestStage("d", csv_source("d.csv", "0" * 64, unsafe_unpinned=True))
    with pytest.raises(IntegrityError):
        stage.run(ctx(), {})
    assert events.events == []


# -- SQL -------------------------------------------------------------------------------------

ROWS = [(1, "alice", 0.5, None), (2, "bob", None, 1), (3, "l'été", 2.0, 0)]


def make_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE people (id INTEGER, name TEXT, score REAL, flag INTEGER)")
    con.executemany("INSERT INTO people VALUES (?, ?, ?, ?)", ROWS)
    con.commit()
    con.close()


QUERY = "SELECT id, name, score, flag FROM people ORDER BY id"
PIN = canonical_rows_sha256(["id", "name", "score", "flag"], ROWS)


def test_canonical_rows_test_vector() -> None:
    expected = b'["a","b"]\n[1,"x"]\n[null,1.5]\n[true,{"decimal":"1.10"}]\n'
    from decimal import Decimal

    got = canonical_rows_sha256(["a", "b"], [(1, "x"), (None, 1.5), (True, Decimal("1.10"))])
    assert got == sha(expected)
    # 1 and 1.0 and "1" are different results
    assert len({canonical_rows_sha256(["a"], [(v,)]) for v in (1, 1.0, "1", True)}) == 4


def test_sqlite_query_round_trip(tmp_path: Path, ctx: Callable[..., StageContext]) -> None:
    make_sqlite(tmp_path / "db.sqlite")
    stage = IngestStage(
        "db", source(format="sql", url="sqlite:///db.sqlite", query=QUERY, sha256=PIN)
    )
    c = ctx()
    table = stage.run(c, {})["table"]
    assert table["id"].tolist() == [1, 2, 3]
    assert table["name"].tolist() == ["alice", "bob", "l'été"]
    assert table["score"].isna().tolist() == [False, True, False]
    assert str(table["flag"].dtype) == "Int64"
    assert c.materials == [Material("source:db", PIN, "sqlite:///db.sqlite")]
    assert decode("table", encode("table", table)).shape == (3, 4)


def test_sqlite_result_change_is_refused(tmp_path: Path, ctx: Callable[..., StageContext]) -> None:
    make_sqlite(tmp_path / "db.sqlite")
    con = sqlite3.connect(tmp_path / "db.sqlite")
    con.execute("UPDATE people SET score = 99 WHERE id = 1")
    con.commit()
    con.close()
    stage = IngestStage(
        "db", source(format="sql", url="sqlite:///db.sqlite", query=QUERY, sha256=PIN)
    )
    with pytest.raises(IntegrityError, match=PIN):
        stage.run(ctx(), {})


def test_query_literals_with_colons_and_percent_are_taken_literally(
    tmp_path: Path, ctx: Callable[..., StageContext]
) -> None:
    make_sqlite(tmp_path / "db.sqlite")
    q = "SELECT '10:30' AS t, 'a%b' AS p, '\\:x' AS e, name FROM people WHERE name LIKE 'a%'"
    row = [("10:30", "a%b", "\\:x", "alice")]
    pin = canonical_rows_sha256(["t", "p", "e", "name"], row)
    table = IngestStage(
        "db", source(format="sql", url="sqlite:///db.sqlite", query=q, sha256=pin)
    ).run(ctx(), {})["table"]
    assert table.iloc[0].tolist() == list(row[0])


def test_env_expansion_in_url(
    tmp_path: Path, ctx: Callable[..., StageContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_sqlite(tmp_path / "db.sqlite")
    monkeypatch.setenv("TEST_DB", str(tmp_path / "db.sqlite"))
    monkeypatch.setenv("BASTION_ALLOW_ENV", "OTHER, TEST_DB")
    stage = IngestStage(
        "db", source(format="sql", url="sqlite:///${TEST_DB}", query=QUERY, sha256=PIN)
    )
    assert len(stage.run(ctx(), {})["table"]) == 3


def test_unset_env_variable_is_named(
    ctx: Callable[..., StageContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_ALLOW_ENV", "NOPE_XYZ")
    monkeypatch.delenv("NOPE_XYZ", raising=False)
    stage = IngestStage(
        "db", source(format="sql", url="sqlite:///${NOPE_XYZ}", query=QUERY, sha256=PIN)
    )
    with pytest.raises(ConfigError, match=r"NOPE_XYZ .* is not set"):
        stage.run(ctx(), {})


@pytest.mark.parametrize("allow", ["", "TEST_DB", "BASTION_MASTER_KEY", "bastion_master_key"])
def test_env_variable_not_allowed_is_refused_before_connecting(
    tmp_path: Path, ctx: Callable[..., StageContext], monkeypatch: pytest.MonkeyPatch, allow: str
) -> None:
    make_sqlite(tmp_path / "db.sqlite")
    monkeypatch.setenv("BASTION_MASTER_KEY", str(tmp_path / "db.sqlite"))
    monkeypatch.setenv("BASTION_ALLOW_ENV", allow)
    stage = IngestStage(
        "db", source(format="sql", url="sqlite:///${BASTION_MASTER_KEY}", query=QUERY, sha256=PIN)
    )
    with pytest.raises(ConfigError, match="BASTION_MASTER_KEY") as info:
        stage.run(ctx(), {})
    assert str(tmp_path) not in str(info.value)


def test_slow_sqlite_query_is_stopped_at_its_timeout(
    tmp_path: Path, ctx: Callable[..., StageContext]
) -> None:
    make_sqlite(tmp_path / "db.sqlite")
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    stage = IngestStage(
        "db",
        source(
            format="sql", url="sqlite:///db.sqlite", query=forever, sha256=PIN, timeout_seconds=0.2
        ),
    )
    with pytest.raises(ConfigError, match=r"longer than its timeout of 0\.2 s") as info:
        stage.run(ctx(), {})
    assert "data.sources.db.timeout_seconds" in str(info.value)


def test_timeout_is_only_for_sql_and_positive() -> None:
    with pytest.raises(ValidationError, match="only for format sql"):
        source(format="csv", path="a.csv", sha256="0" * 64, timeout_seconds=5)
    with pytest.raises(ValidationError):
        source(format="sql", url="sqlite:///a.db", query="SELECT 1", sha256=PIN, timeout_seconds=0)
    default = source(format="sql", url="sqlite:///a.db", query="SELECT 1", sha256=PIN)
    assert default.timeout_seconds is None  # ingest applies 300 s
    assert source(**default.model_dump()) == default


def test_missing_sqlite_file_is_refused_and_not_created(
    tmp_path: Path, ctx: Callable[..., StageContext]
) -> None:
    stage = IngestStage(
        "db", source(format="sql", url="sqlite:///none.db", query=QUERY, sha256=PIN)
    )
    with pytest.raises(ConfigError, match="database file not found"):
        stage.run(ctx(), {})
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM people",
        "SELECT 1; DROP TABLE people",
        "select 1; drop table people;",
        "WITH gone AS (DELETE FROM people RETURNING *) SELECT * FROM gone",
        "SELECT * INTO copy FROM people",
        "SELECT '\\''; DROP TABLE people; --'",  # hides the DROP only from a standard-SQL reading
        "SELECT $$;DROP TABLE people;$$",  # hides it only from a PostgreSQL reading
        "SELECT 1 --1; DROP TABLE people",  # MySQL: "--1" is not a comment
        "SELECT 1 /*! ; DROP TABLE people */",
        "ATTACH DATABASE 'x.db' AS x",
        "PRAGMA writable_schema = 1",
    ],
)
def test_non_select_query_is_refused(
    tmp_path: Path, ctx: Callable[..., StageContext], query: str
) -> None:
    make_sqlite(tmp_path / "db.sqlite")
    stage = IngestStage(
        "db", source(format="sql", url="sqlite:///db.sqlite", query=query, sha256=PIN)
    )
    with pytest.raises(ConfigError, match="query refused"):
        stage.run(ctx(), {})
    con = sqlite3.connect(tmp_path / "db.sqlite")
    assert con.execute("SELECT count(*) FROM people").fetchone() == (3,)
    con.close()


def test_empty_query_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not start with SELECT"):
        check_read_only_query("  -- nothing\n")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1",
        "with x as (select 1) select * from x;",
        "SELECT ';' AS s",
        "SELECT a::text FROM t",
        "SELECT update_count FROM t -- ; nothing",
        "SELECT arr[1] FROM t",
    ],
)
def test_plain_selects_are_accepted(query: str) -> None:
    check_read_only_query(query)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_query_check_only_ever_raises_config_error(query: str) -> None:
    with contextlib.suppress(ConfigError):
        check_read_only_query(query)


def test_password_is_redacted_everywhere(
    ctx: Callable[..., StageContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-Pa55word"
    monkeypatch.setenv("TEST_PW", secret)
    monkeypatch.setenv("BASTION_ALLOW_ENV", "TEST_PW")
    # Nothing listens on port 1: the connection fails, and the message must not leak.
    stage = IngestStage(
        "db",
        source(
            format="sql",
            url="postgresql+psycopg://bastion:${TEST_PW}@127.0.0.1:1/x",
            query="SELECT 1",
            sha256=PIN,
        ),
    )
    with pytest.raises(ConfigError) as info:
        stage.run(ctx(), {})
    assert secret not in str(info.value) and secret not in repr(info.value.__cause__)
    assert "bastion:***@127.0.0.1:1" in str(info.value)
    assert redact_url(f"postgresql://u:{secret}@h/d?sslpassword={secret}&a=b") == (
        "postgresql://u:***@h/d?a=b&sslpassword=***"
    )


@pytest.mark.postgres
def test_postgresql_query_pinned_read_only_and_redacted(
    postgres_url: str, ctx: Callable[..., StageContext]
) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE people (id int, name text, score float8, flag int)"))
        conn.execute(text("CREATE SEQUENCE s"))
        for row in ROWS:
            conn.execute(
                text("INSERT INTO people VALUES (:a, :b, :c, :d)"),
                dict(zip("abcd", row, strict=True)),
            )
    engine.dispose()
    # The server trusts loopback, so any password works: it must still never be shown.
    url = (
        make_url(postgres_url).set(password="hunter2-secret").render_as_string(hide_password=False)
    )
    c = ctx()
    stage = IngestStage("pg", source(format="sql", url=url, query=QUERY, sha256=PIN))
    table = stage.run(c, {})["table"]
    assert table["name"].tolist() == ["alice", "bob", "l'été"]
    assert "hunter2-secret" not in c.materials[0].uri and "***" in c.materials[0].uri
    # Colons, casts and percent signs reach the server literally (no bind parameters).
    q = "SELECT '10:30' AS t, 'a%b' AS p, 7::text AS c"
    pin = canonical_rows_sha256(["t", "p", "c"], [("10:30", "a%b", "7")])
    literal = IngestStage("pg", source(format="sql", url=url, query=q, sha256=pin))
    assert literal.run(c, {})["table"].iloc[0].tolist() == ["10:30", "a%b", "7"]
    # A SELECT with a side effect passes the lexical check but not the READ ONLY transaction.
    writer = IngestStage(
        "pg", source(format="sql", url=url, query="SELECT nextval('s')", sha256=PIN)
    )
    with pytest.raises(ConfigError, match="read-only transaction"):
        writer.run(c, {})


def test_sql_values_pandas_cannot_type_become_text(
    tmp_path: Path, ctx: Callable[..., StageContext]
) -> None:
    make_sqlite(tmp_path / "db.sqlite")
    q = "SELECT x'cafe' AS b, 1.5 AS f, NULL AS n, 2 AS i"
    pin = canonical_rows_sha256(["b", "f", "n", "i"], [(b"\xca\xfe", 1.5, None, 2)])
    stage = IngestStage("db", source(format="sql", url="sqlite:///db.sqlite", query=q, sha256=pin))
    table = stage.run(ctx(), {})["table"]
    assert table["b"].tolist() == ["cafe"]
    assert table["f"].dtype == "float64" and table["n"].isna().all()
    assert decode("table", encode("table", table)).shape == (1, 4)


@pytest.mark.postgres
def test_slow_postgresql_query_is_stopped_at_its_timeout(
    postgres_url: str, ctx: Callable[..., StageContext]
) -> None:
    stage = IngestStage(
        "pg",
        source(
            format="sql",
            url=postgres_url,
            query="SELECT pg_sleep(30)",
            sha256=PIN,
            timeout_seconds=0.5,
        ),
    )
    with pytest.raises(ConfigError, match=r"source 'pg' .* longer than its timeout of 0\.5 s"):
        stage.run(ctx(), {})
