"""The Adult pipeline through the real CLI on a temporary home: runs, caches, gates, refuses.

The session's Adult home (conftest ``adult_run``: the pipeline ran once) is read here;
tests that tamper or run again work on copies.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PASSPHRASE, AdultRun, Home, copy_home, run_cli
from tests.helpers.adult import ADULT_GATES, ADULT_STAGES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "adult-income" / "pipeline.yaml"


def pipeline_file(folder: Path, edit: Any = None, name: str = "pipeline.yaml") -> Path:
    """A copy of the Adult pipeline in ``folder`` with absolute data paths, edited."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    for source in doc["data"]["sources"].values():
        source["path"] = str(EXAMPLE.parent / source["path"])
    if edit:
        edit(doc)
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def ran(adult_run: AdultRun) -> tuple[Home, dict[str, Any]]:
    """The session's one Adult run: its home (read only here) and its ``--json`` output."""
    return adult_run.home, {**adult_run.result, "stderr": adult_run.stderr}  # stderr: progress


def test_adult_runs_end_to_end_and_passes_its_gates(ran: tuple[Home, dict[str, Any]]) -> None:
    home, result = ran
    assert result["status"] == "passed"
    assert result["model"] == "adult-income:1"
    assert {(g["stage"], g["gate"]) for g in result["gates"]} == ADULT_GATES
    assert all(g["passed"] for g in result["gates"])
    names = [s["name"] for s in result["stages"]]
    assert names == ADULT_STAGES
    report = Path(result["report"])
    assert report.is_file() and (report.parent / "report.json").is_file()
    card = (report.parent / "model_card.md").read_text()
    assert "adult-income:1" in card
    assert "Data defenses" in card and "duplicates:exact_duplicate 24 (quarantine)" in card
    assert (report.parent / "model_card.html").is_file()
    assert "data:image/png;base64," in report.read_text()
    verified = run_cli(["verify", "--json"], home.env())
    assert verified.code == 0 and verified.json()["models"] == 1
    assert run_cli(["audit", "verify"], home.env()).code == 0


def test_models_list_show_and_verify(ran: tuple[Home, dict[str, Any]]) -> None:
    home, _ = ran
    listed = run_cli(["models", "list", "--json"], home.env()).json()["models"]
    assert [m["model"] for m in listed] == ["adult-income:1"]
    shown = run_cli(["models", "show", "adult-income:1", "--json"], home.env())
    assert shown.code == 0, shown.err
    data = shown.json()
    assert data["verified"] is True
    # data-flow order: from the pinned sources' ingest to the stage that made the model
    assert data["provenance"][0].startswith("ingest.")
    assert data["provenance"][-1] == "train"
    pins = {s["sha256"] for s in data["sources"]}
    assert "a5b3a620cb7325a48f5090531afd611ce4622440451a5cfbd11c49be2ed868e5" in pins
    ver = run_cli(["verify", "--model", "adult-income:1", "--json"], home.env())
    assert ver.code == 0 and ver.json()["ok"] is True


def test_every_stage_is_signed_and_audited(ran: tuple[Home, dict[str, Any]]) -> None:
    home, result = ran
    entries = run_cli(["audit", "show", "--json", "--limit", "10000"], home.env()).json()
    actions = [(e["action"], e["resource"]) for e in entries["entries"]]
    for stage in result["stages"]:
        assert ("stage.start", f"stage:{stage['name']}") in actions
        assert ("stage.finish", f"stage:{stage['name']}") in actions
    assert ("model.register", "model:adult-income:1") in actions


def test_no_change_rerun_reuses_every_stage(
    ran: tuple[Home, dict[str, Any]], tmp_path: Path
) -> None:
    home = copy_home(ran[0], tmp_path / "home")
    res = run_cli(["run", str(EXAMPLE), "--json"], home.env())
    assert res.code == 0, res.err
    again = res.json()
    # the first rerun has what the first run lacked, a passed run to measure shift against:
    # only that cheap comparison reruns, and finds nothing
    rerun = [s["name"] for s in again["stages"] if not s["cached"]]
    assert rerun == ["shift.train"], again["stages"]
    assert again["model"] == "adult-income:1"  # same bytes, same version
    assert again["run_id"] != ran[1]["run_id"]
    third = run_cli(["run", str(EXAMPLE), "--json"], home.env()).json()
    assert all(s["cached"] for s in third["stages"]), third["stages"]
    report = json.loads((Path(third["report"]).parent / "report.json").read_text())
    shift = report["validation"]["train"]["shift"]
    assert shift["ran"] is True and shift["findings"] == []


def test_screen_and_pii_run_on_adult_and_are_in_the_report(
    ran: tuple[Home, dict[str, Any]],
) -> None:
    _, result = ran
    report = json.loads((Path(result["report"]).parent / "report.json").read_text())
    train = report["validation"]["train"]
    assert train["pii"]["scanned"] is True and train["pii"]["hits"] == []  # Adult has none
    screen = train["screen"]
    assert set(screen["ran"]) == {"label_noise", "backdoor", "outliers", "duplicates"}
    assert screen["counts"]["duplicates"]["exact_duplicate"] == 24  # Adult's own repeats
    assert screen["rows_quarantined"] >= 24
    assert train["shift"]["ran"] is False  # no earlier passed run
    assert (Path(result["report"]).parent / "screen_train.png").is_file()
    assert "Poisoning screen: train" in Path(result["report"]).read_text()
    assert "test" not in {k for k, v in report["validation"].items() if "screen" in v}


def test_changed_model_setting_reruns_train_and_what_follows(
    ran: tuple[Home, dict[str, Any]], tmp_path: Path
) -> None:
    home = copy_home(ran[0], tmp_path / "home")

    def slower(doc: dict[str, Any]) -> None:
        doc["model"]["params"]["learning_rate"] = 0.05

    res = run_cli(["run", str(pipeline_file(tmp_path, slower)), "--json"], home.env())
    assert res.code == 0, res.err
    cached = {s["name"]: s["cached"] for s in res.json()["stages"]}
    assert (
        cached
        == {
            "ingest.train": True,
            "ingest.test": True,
            "validate.train": True,
            "validate.test": True,
            "pii.train": True,
            "pii.test": True,
            "screen.train": True,
            "shift.train": False,  # a passed run now exists to compare with (shift only)
            "split": True,
            "features": True,
            "train": False,
            **{name: False for name in ADULT_STAGES[ADULT_STAGES.index("evaluate") :]},
        }
    )
    assert res.json()["model"] == "adult-income:2"


def test_impossible_gate_fails_with_exit_1_and_releases_nothing(
    ran: tuple[Home, dict[str, Any]], tmp_path: Path
) -> None:
    home = copy_home(ran[0], tmp_path / "home")

    def impossible(doc: dict[str, Any]) -> None:
        doc["evaluate"]["gates"]["min_accuracy"] = 0.999

    path = pipeline_file(tmp_path, impossible)
    res = run_cli(["run", str(path), "--json"], home.env())
    assert res.code == 1
    data = res.json()
    assert data["status"] == "failed" and data["model"] is None
    failed = [g for g in data["gates"] if not g["passed"]]
    assert [g["gate"] for g in failed] == ["min_accuracy"]
    human = run_cli(["run", str(path)], home.env())
    assert human.code == 1 and "FAIL" in human.out and "min_accuracy" in human.out
    listed = run_cli(["models", "list", "--json"], home.env()).json()["models"]
    assert [m["model"] for m in listed] == ["adult-income:1"]


def _unknown_key(doc: dict[str, Any]) -> None:
    doc["model"]["estimatorz"] = "x"


def _wrong_type(doc: dict[str, Any]) -> None:
    doc["seed"] = "forty-two"


def _missing_file(doc: dict[str, Any]) -> None:
    doc["data"]["sources"]["train"]["path"] = "/nonexistent/adult.data"


def _hash_mismatch(doc: dict[str, Any]) -> None:
    doc["data"]["sources"]["train"]["sha256"] = "0" * 64


def _schema_violation(doc: dict[str, Any]) -> None:
    doc["data"]["schema"]["age"]["max"] = 80


def _unknown_estimator(doc: dict[str, Any]) -> None:
    doc["model"]["estimator"] = "MagicForestClassifier"


def _not_allowed(doc: dict[str, Any]) -> None:
    doc["model"]["estimator"] = "KNeighborsClassifier"
    doc["model"]["params"] = {}


def test_data_changed_under_its_pin_is_a_failed_check_exit_1(
    ran: tuple[Home, dict[str, Any]], tmp_path: Path
) -> None:
    """A pin mismatch is a check that failed (exit 1), not bad usage (exit 2)."""
    home = copy_home(ran[0], tmp_path / "home")
    res = run_cli(["run", str(pipeline_file(tmp_path, _hash_mismatch))], home.env())
    assert res.code == 1, (res.code, res.out, res.err)
    assert "Traceback" not in res.err
    assert "train" in res.err and "0000000000" in res.err
    assert re.search(r"^stage ingest\.train: FAILED after \d+\.\d\d s$", res.err, re.M), res.err


def test_stderr_not_a_terminal_gets_one_line_per_stage(
    ran: tuple[Home, dict[str, Any]], tmp_path: Path
) -> None:
    """Progress is never silent: piped stderr gets a plain line as each stage ends."""
    _home, result = ran
    names = [s["name"] for s in result["stages"]]
    lines = [line for line in result["stderr"].splitlines() if line.startswith("stage ")]
    assert [line.split(":")[0].removeprefix("stage ") for line in lines] == names
    assert all(re.fullmatch(r"stage \S+: done in \d+\.\d\d s", line) for line in lines), lines
    home = copy_home(ran[0], tmp_path / "home")
    again = run_cli(["run", str(EXAMPLE)], home.env(), timeout=600)
    assert again.code == 0, again.err
    shown = [line for line in again.err.splitlines() if line.startswith("stage ")]
    rerun = {"shift.train"}  # compares with the last passed run: new input, runs again
    assert shown == [
        f"stage {n}: cached" if n not in rerun else shown[names.index(n)] for n in names
    ], again.err
    assert re.fullmatch(
        r"stage shift\.train: done in \d+\.\d\d s", shown[names.index("shift.train")]
    )


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (_unknown_key, ["model.estimatorz", "unknown key", ":"]),
        (_wrong_type, ["seed", "forty-two"]),
        (_missing_file, ["/nonexistent/adult.data"]),
        (_schema_violation, ["row", "column age"]),
        (_unknown_estimator, ["MagicForestClassifier", "unknown estimator"]),
        (_not_allowed, ["KNeighborsClassifier", "allow-list"]),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "missing-file",
        "schema-violation",
        "unknown-estimator",
        "not-allow-listed",
    ],
)
def test_bad_input_exits_2_naming_the_problem(
    ran: tuple[Home, dict[str, Any]], tmp_path: Path, edit: Any, needles: list[str]
) -> None:
    home = copy_home(ran[0], tmp_path / "home")
    res = run_cli(["run", str(pipeline_file(tmp_path, edit))], home.env())
    assert res.code == 2, (res.code, res.out, res.err)
    assert "Traceback" not in res.err
    for needle in needles:
        assert needle in res.err, (needle, res.err)


def test_unknown_key_error_names_the_line(ran: tuple[Home, dict[str, Any]], tmp_path: Path) -> None:
    home = copy_home(ran[0], tmp_path / "home")
    path = pipeline_file(tmp_path, _unknown_key)
    lines = path.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "estimatorz" in text)
    res = run_cli(["run", str(path)], home.env())
    assert f"{path.name}:{line}:" in res.err


def _model_blob(home: Home) -> Path:
    listed = run_cli(["models", "list", "--json"], home.env()).json()["models"]
    digest = listed[0]["digest"]
    return home.path / "objects" / digest[:2] / digest


def test_tampered_model_file_is_refused_everywhere(
    ran: tuple[Home, dict[str, Any]], tmp_path: Path
) -> None:
    from bastion.errors import IntegrityError

    home = copy_home(ran[0], tmp_path / "home")
    blob = _model_blob(home)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x08
    blob.write_bytes(bytes(data))
    show = run_cli(["models", "show", "adult-income:1"], home.env())
    assert show.code == 1 and "adult-income:1" in show.err
    ver = run_cli(["verify", "--model", "adult-income:1"], home.env())
    assert ver.code == 1
    assert run_cli(["verify"], home.env()).code == 1
    with home.open() as ws, pytest.raises(IntegrityError):
        ws.models.load("adult-income:1")


def test_swapped_model_file_is_refused(ran: tuple[Home, dict[str, Any]], tmp_path: Path) -> None:
    """Replace the model blob with another valid blob (the transformer): a replay."""
    home = copy_home(ran[0], tmp_path / "home")
    blob = _model_blob(home)
    other = next(p for p in (home.path / "objects").rglob("*") if p.is_file() and p != blob)
    blob.write_bytes(other.read_bytes())
    assert run_cli(["verify", "--model", "adult-income:1"], home.env()).code == 1


def test_tampered_provenance_statement_is_refused_everywhere(
    ran: tuple[Home, dict[str, Any]], tmp_path: Path
) -> None:
    from bastion.errors import IntegrityError

    home = copy_home(ran[0], tmp_path / "home")
    with sqlite3.connect(home.path / "bastion.db") as conn:
        sid, text = conn.execute(
            "SELECT id, envelope FROM statements WHERE predicate_type LIKE '%/stage/v1'"
            " AND envelope LIKE '%' ORDER BY created LIMIT 1"
        ).fetchone()
        env = json.loads(text)
        import base64

        payload = json.loads(base64.b64decode(env["payload"]))
        payload["predicate"]["seed"] = 7  # the attacker rewrites history...
        env["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
        new_text = json.dumps(env)
        import hashlib

        new_id = hashlib.sha256(new_text.encode()).hexdigest()  # ...and even fixes the id
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute(
            "UPDATE statements SET id = ?, envelope = ? WHERE id = ?", (new_id, new_text, sid)
        )
        conn.execute(
            "UPDATE statement_subjects SET statement_id = ? WHERE statement_id = ?", (new_id, sid)
        )
    show = run_cli(["models", "show", "adult-income:1"], home.env())
    assert show.code == 1, show.err
    assert run_cli(["verify", "--model", "adult-income:1"], home.env()).code == 1
    assert run_cli(["verify"], home.env()).code == 1
    with home.open() as ws, pytest.raises(IntegrityError):
        ws.models.load("adult-income:1")


def test_python_api_mirrors_the_cli(ran: tuple[Home, dict[str, Any]], tmp_path: Path) -> None:
    from bastion import Pipeline, Workspace

    home = copy_home(ran[0], tmp_path / "home")
    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        result = Pipeline.from_yaml(EXAMPLE).run(ws)
        assert result.status == "passed" and result.model == "adult-income:1"
        model, verified = ws.models.load("adult-income:1")
        import pandas as pd

        test = pd.read_csv(
            EXAMPLE.parent / "data" / "adult.test", skipinitialspace=True, na_values="?"
        ).head(50)
        assert len(model.predict(test)) == 50
        assert verified.sources


def test_loaded_model_answers_with_the_labels_the_server_gives(
    ran: tuple[Home, dict[str, Any]],
) -> None:
    """``ws.models.load`` predicts "<=50K"/">50K" like the server, not the fitted 0/1."""
    import numpy as np
    import pandas as pd

    home = ran[0]
    test = pd.read_csv(
        EXAMPLE.parent / "data" / "adult.test", skipinitialspace=True, na_values="?"
    ).head(200)
    with home.open() as ws:
        model, _verified = ws.models.load("adult-income:1")
    assert list(model.classes_) == ["<=50K", ">50K"]
    labels = model.predict(test)
    assert set(labels) == {"<=50K", ">50K"}
    raw = model.estimator.predict(test)  # the raw scikit-learn pipeline: 0/1
    assert set(np.unique(raw)) == {0, 1}
    assert list(labels) == [model.classes_[i] for i in raw]
    proba = model.predict_proba(test)
    assert proba.shape == (200, 2) and np.allclose(proba, model.estimator.predict_proba(test))


def test_schema_prints_a_json_schema(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    res = run_cli(["schema"], env)
    assert res.code == 0
    schema = res.json()
    assert schema["title"] == "Bastion pipeline"
    assert "data" in schema["properties"] and "model" in schema["properties"]
