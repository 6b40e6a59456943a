"""What the CLI prints does not mislead: user strings literal, provenance in data-flow
order, the audit log newest first and filtered, ``--version``, honest help."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Home
from tests.helpers.cli import invoke

Fixtures = tuple[pytest.MonkeyPatch, pytest.CaptureFixture[str]]


@pytest.fixture
def io(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Fixtures:
    return monkeypatch, capsys


def test_version_prints_the_package_version(io: Fixtures) -> None:
    from importlib.metadata import version

    res = invoke(["--version"], {}, *io)
    assert res.code == 0 and res.out.strip() == f"bastion {version('bastion-ml')}"


def test_help_offers_only_commands_that_exist(io: Fixtures) -> None:
    top = invoke(["--help"], {}, *io)
    models = next(line for line in top.out.splitlines() if line.strip().startswith("models"))
    assert top.code == 0 and "verify" not in models, models
    group = invoke(["models", "--help"], {}, *io)
    assert "bastion verify --model" in " ".join(group.out.split())
    assert invoke(["models", "verify"], {}, *io).code == 2  # and it really does not exist
    schema = invoke(["schema", "--help"], {}, *io)
    assert "default: True" not in schema.out and "--json" not in schema.out
    assert invoke(["schema", "--json"], {}, *io).code == 0  # still accepted by scripts


def test_models_show_prints_names_literally_in_data_flow_order(
    adult_home: Home, io: Fixtures
) -> None:
    env = adult_home.env(COLUMNS="200")
    human = invoke(["models", "show", "adult-income:1"], env, *io)
    assert human.code == 0, human.err
    assert "source:train: sha256:" in human.out  # Rich once printed "source🚋 sha256:"
    assert "🚋" not in human.out and "←" not in human.out
    shown = invoke(["models", "show", "adult-income:1", "--json"], env, *io).out
    import json

    flow = json.loads(shown)["provenance"]
    first = {name: flow.index(name) for name in flow}
    assert flow[0].startswith("ingest.")
    # every stage the training data went through, even those that passed the table on
    # unchanged (same digest): content addressing once let the chain skip pii and split
    path = ["ingest.train", "validate.train", "pii.train", "screen.train", "split", "features"]
    for before, after in itertools.pairwise(path):
        assert first[before] < first[after], flow
    assert {"ingest.test", "pii.test"} <= set(flow), flow  # split read the test source too
    assert first["features"] < first["train"] == len(flow) - 1, flow
    line = next(x for x in human.out.splitlines() if "pinned source(s) →" in x)
    assert line.index("ingest.train") < line.index("features") < line.rindex("train → model")


def test_markup_and_emoji_codes_in_names_are_printed_as_typed(
    home: Home, tmp_path: Path, io: Fixtures
) -> None:
    f = tmp_path / "data.bin"
    f.write_bytes(b"x" * 100)
    name = "[red]x[/] :train: [bold]"
    put = invoke(["artifact", "put", str(f), "--name", name], home.env(COLUMNS="200"), *io)
    assert put.code == 0, put.err
    assert f"stored {name}: sha256:" in put.out
    assert invoke(["principal", "add", "alice"], home.env(), *io).code == 0
    granted = invoke(
        ["principal", "grant", "alice", "--role", "consumer", "--dataset", "x:train:"],
        home.env(COLUMNS="200"),
        *io,
    )
    assert granted.code == 0 and "dataset:x:train: to alice" in granted.out, granted.err
    listed = invoke(["principal", "list"], home.env(COLUMNS="200"), *io)
    assert "consumer@dataset:x:train:" in listed.out and "🚋" not in listed.out


def _entries(home: Home, io: Fixtures, *args: str) -> list[dict]:
    import json

    res = invoke(["audit", "show", "--json", *args], home.env(), *io)
    assert res.code == 0, res.err
    return list(json.loads(res.out)["entries"])


def test_audit_show_is_newest_first_and_filters_in_the_database(home: Home, io: Fixtures) -> None:
    for name in ("alice", "bob", "carol"):
        assert invoke(["principal", "add", name], home.env(), *io).code == 0
    newest = _entries(home, io)
    seqs = [e["seq"] for e in newest]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 4
    oldest = _entries(home, io, "--oldest-first", "--limit", "2")
    assert [e["seq"] for e in oldest] == [1, 2]
    page = _entries(home, io, "--limit", "2", "--start", str(seqs[1]))
    assert [e["seq"] for e in page] == seqs[1:3]
    adds = _entries(home, io, "--action", "principal.add")
    assert [e["resource"] for e in adds][:3] == [
        "principal:carol",
        "principal:bob",
        "principal:alice",
    ]
    assert _entries(home, io, "--actor", "nobody") == []
    assert {e["actor"] for e in _entries(home, io, "--actor", "admin")} == {"admin"}
    assert _entries(home, io, "--since", "1h") == newest[:50]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert _entries(home, io, "--since", future) == []
    assert _entries(home, io, "--until", "2000-01-01T00:00:00Z") == []
    bad = invoke(["audit", "show", "--since", "yesterday"], home.env(), *io)
    assert bad.code == 2 and "--since" in bad.err and "ISO 8601" in bad.err


def test_audit_show_is_readable_at_80_columns(home: Home, io: Fixtures) -> None:
    long = "svc-" + "a" * 100
    assert invoke(["principal", "add", long], home.env(), *io).code == 0
    res = invoke(["audit", "show", "--limit", "5"], home.env(COLUMNS="80"), *io)
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    rows = [line for line in lines if line.strip()[:1].isdigit()]
    assert len(rows) == 5  # one line per entry, no wrapping
    assert "…" in rows[0] and "principal.add" in rows[0]  # the long subject is cut
    for column in ("seq", "time", "actor", "action", "subject"):
        assert column in res.out


def test_verify_on_a_pipe_prints_one_line_per_check(
    home: Home, tmp_path: Path, io: Fixtures
) -> None:
    """Not silent when stderr is not a terminal: each check says it ended, and how long."""
    import re

    (tmp_path / "f").write_bytes(b"some bytes")
    assert invoke(["artifact", "put", str(tmp_path / "f")], home.env(), *io).code == 0
    res = invoke(["verify"], home.env(), *io)
    assert res.code == 0, res.err
    lines = res.err.splitlines()
    assert lines and all(re.fullmatch(r"verify \w+: done in \d+\.\d\d s", x) for x in lines)
    assert {"verify artifacts", "verify statements", "verify audit"} <= {
        x.split(":")[0] for x in lines
    }


def test_audit_show_next_page_keeps_the_filters(home: Home, io: Fixtures) -> None:
    for name in ("alice", "bob", "carol"):
        assert invoke(["principal", "add", name], home.env(), *io).code == 0
    res = invoke(["audit", "show", "--action", "principal.add", "--limit", "2"], home.env(), *io)
    more = res.out.strip().splitlines()[-1]
    assert more.startswith("more: bastion audit show --action principal.add --start "), more
