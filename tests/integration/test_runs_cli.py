"""Finding a run: ``bastion runs list`` / ``runs show`` and ``ws.runs`` on the session's
Adult home (one real run through the CLI), and the report paths in ``models show --json``.

Tests that write (an audited show, a second run, a tampered row or folder) work on a copy.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Home, copy_home, run_cli
from tests.helpers.adult import ADULT_GATES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "adult-income" / "pipeline.yaml"
FILES = ("report", "report_json", "model_card", "model_card_md")


def _only_run(home: Home) -> dict:
    res = run_cli(["runs", "list", "--json"], home.env())
    assert res.code == 0, res.err
    runs = res.json()["runs"]
    assert len(runs) == 1
    return runs[0]


def _inside(path: str, home: Home) -> bool:
    return Path(path).is_absolute() and Path(path).is_relative_to(home.path.resolve())


def test_runs_list_shows_the_run_its_stages_gates_and_whole_report_paths(
    adult_home: Home,
) -> None:
    run = _only_run(adult_home)
    assert run["pipeline"] == "adult-income"
    assert run["status"] == "passed"
    assert run["model"] == "adult-income:1"
    assert run["actor"] == "admin"
    assert run["started"] < run["finished"]
    names = [s["name"] for s in run["stages"]]
    assert names[0] == "ingest.train" and names[-1] == "release" and "evaluate" in names
    assert all(s["status"] == "done" and s["seconds"] >= 0 for s in run["stages"])
    assert {(g["stage"], g["gate"]) for g in run["gates"]} == ADULT_GATES
    for g in run["gates"]:
        above = g["value"] >= g["threshold"]
        assert g["passed"] and (
            above if g["gate"].startswith("min_") else not above or g["value"] == g["threshold"]
        ), g
    for key in FILES:
        assert _inside(run[key], adult_home), key
        assert Path(run[key]).is_file(), key
    assert Path(run["report"]).name == "report.html"
    assert run["run_id"] in Path(run["report_json"]).read_text()


def test_the_python_api_returns_typed_records(adult_home: Home) -> None:
    from bastion.pipeline.runs import GateOutcome, RunRecord, StageOutcome

    with adult_home.open() as ws:
        records = ws.runs.list()
    (record,) = records
    assert isinstance(record, RunRecord)
    assert all(isinstance(s, StageOutcome) for s in record.stages)
    assert all(isinstance(g, GateOutcome) and g.passed for g in record.gates)
    assert record.model == "adult-income:1"
    assert record.files.model_card is not None and record.files.model_card.is_file()
    assert record.files.report is not None and record.files.report.is_absolute()


def test_runs_show_takes_a_unique_prefix_prints_whole_paths_and_is_audited(
    adult_home: Home, tmp_path: Path
) -> None:
    home = copy_home(adult_home, tmp_path / "home")
    run = _only_run(home)
    res = run_cli(["runs", "show", run["run_id"][:10], "--json"], home.env())
    assert res.code == 0, res.err
    assert res.json() == run
    # the human form, in a terminal far narrower than a path: each path on its own, whole
    res = run_cli(["runs", "show", run["run_id"]], home.env(COLUMNS="40"))
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    for key, label in [("report", "report (HTML)"), ("model_card", "model card (HTML)")]:
        assert f"{label}: {run[key]}" in lines
    assert "model: adult-income:1" in lines
    with home.open() as ws:
        shows = ws.audit_entries(action="run.show")
    assert [e.resource for e in shows] == [f"run:{run['run_id']}"] * 2


def test_an_unknown_run_is_bad_usage_naming_it(adult_home: Home, tmp_path: Path) -> None:
    home = copy_home(adult_home, tmp_path / "home")
    res = run_cli(["runs", "show", "19990101T000000-deadbeef"], home.env())
    assert res.code == 2
    assert "run '19990101T000000-deadbeef': no such run" in res.err
    assert "Traceback" not in res.err
    res = run_cli(["runs", "show", "../reports"], home.env())
    assert res.code == 2
    assert "run: expected a run id" in res.err


def test_runs_list_is_newest_first_and_a_shared_prefix_is_refused(
    adult_home: Home, tmp_path: Path
) -> None:
    home = copy_home(adult_home, tmp_path / "home")
    first = _only_run(home)["run_id"]
    res = run_cli(["run", str(EXAMPLE), "--json"], home.env(), timeout=600)
    assert res.code == 0, res.err
    second = res.json()["run_id"]
    res = run_cli(["runs", "list", "--json"], home.env())
    assert [r["run_id"] for r in res.json()["runs"]] == [second, first]
    res = run_cli(["runs", "list", "--limit", "1", "--json"], home.env())
    assert [r["run_id"] for r in res.json()["runs"]] == [second]
    assert all(s["cached"] for s in res.json()["runs"][0]["stages"] if s["name"] == "train")
    shared = first[: next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)]
    res = run_cli(["runs", "show", shared], home.env())
    assert res.code == 2
    assert "more than one run" in res.err and first in res.err and second in res.err


def test_a_report_folder_linked_outside_the_home_is_not_shown(
    adult_home: Home, tmp_path: Path
) -> None:
    """An attacker who can write in the home swaps the run's report folder for a link to
    files of their own elsewhere: the listing names no path outside the home."""
    home = copy_home(adult_home, tmp_path / "home")
    run_id = _only_run(home)["run_id"]
    folder = home.path / "reports" / run_id
    elsewhere = tmp_path / "elsewhere" / run_id
    shutil.copytree(folder, elsewhere)
    shutil.rmtree(folder)
    folder.symlink_to(elsewhere, target_is_directory=True)
    run = _only_run(home)
    assert all(run[key] is None for key in FILES)
    assert run["status"] == "passed"  # the rest of the record is still shown


def test_a_run_row_naming_paths_outside_the_home_is_not_followed(
    adult_home: Home, tmp_path: Path
) -> None:
    """The runs table carries no MAC: an edited id or report path in a row must not make
    the listing point outside the home."""
    home = copy_home(adult_home, tmp_path / "home")
    run_id = _only_run(home)["run_id"]
    outside = tmp_path / "planted" / "report.html"
    outside.parent.mkdir()
    outside.write_text("<p>planted</p>")
    with sqlite3.connect(home.path / "bastion.db") as db:
        db.execute(
            "UPDATE runs SET record = json_set(record, '$.report', ?) WHERE id = ?",
            (str(outside), run_id),
        )
    run = _only_run(home)
    assert run["report"] == str((home.path / "reports" / run_id / "report.html").resolve())
    with sqlite3.connect(home.path / "bastion.db") as db:
        db.execute("UPDATE runs SET id = ? WHERE id = ?", (f"../../{outside.parent.name}", run_id))
    run = _only_run(home)
    assert all(run[key] is None for key in FILES)


def test_runs_need_model_read_and_a_refusal_is_audited(adult_home: Home, tmp_path: Path) -> None:
    home = copy_home(adult_home, tmp_path / "home")
    run_id = _only_run(home)["run_id"]

    def token(role: str, *scope: str) -> str:
        res = run_cli(["token", "create", "--role", role, *scope, "--json"], home.env())
        assert res.code == 0, res.err
        return str(res.json()["token"])

    consumer = home.env(BASTION_TOKEN=token("consumer", "--deployment", "adult-income"))
    for args in (["runs", "list"], ["runs", "show", run_id]):
        res = run_cli(args, consumer)
        assert res.code == 1, res.err
        assert "may not model:read" in res.err
    auditor = home.env(BASTION_TOKEN=token("auditor"))
    assert run_cli(["runs", "show", run_id, "--json"], auditor).code == 0
    scoped = home.env(BASTION_TOKEN=token("ml-engineer", "--model", "other-model"))
    assert run_cli(["runs", "show", run_id], scoped).code == 1
    assert run_cli(["runs", "list", "--pipeline", "other-model", "--json"], scoped).json() == {
        "runs": []
    }
    with home.open() as ws:
        denied = ws.audit_entries(action="model:read")
    assert [(e.resource, e.outcome) for e in denied] == [
        ("model:*", "denied"),
        ("model:adult-income", "denied"),
        ("model:adult-income", "denied"),
    ]


@pytest.mark.parametrize("ref", ["adult-income", "adult-income:1"])
def test_models_show_json_gives_the_report_and_model_card_paths(
    adult_home: Home, tmp_path: Path, ref: str
) -> None:
    home = copy_home(adult_home, tmp_path / "home")
    res = run_cli(["models", "show", ref, "--json"], home.env())
    assert res.code == 0, res.err
    shown = res.json()
    run = _only_run(home)
    assert shown["run_id"] == run["run_id"]
    for key in ("report", "report_json", "model_card"):
        assert shown[key] == run[key]
        assert _inside(shown[key], home) and Path(shown[key]).is_file()


def test_a_run_row_whose_record_is_not_json_is_named(adult_home: Home, tmp_path: Path) -> None:
    home = copy_home(adult_home, tmp_path / "home")
    run_id = _only_run(home)["run_id"]
    with sqlite3.connect(home.path / "bastion.db") as db:
        db.execute("UPDATE runs SET record = '{not json' WHERE id = ?", (run_id,))
    for args in (["runs", "list"], ["runs", "show", run_id]):
        res = run_cli(args, home.env())
        assert res.code == 1, res.err
        assert f"runs row '{run_id}': its record is not valid JSON" in res.err
        assert "Traceback" not in res.err
