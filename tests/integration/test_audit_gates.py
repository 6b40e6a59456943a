"""Audit gates end to end on the loan-default example: a failed audit gate holds the
release back; only a principal who may approve can override it, with a reason, signed and
audited; every run signs an evaluation statement that the release names and that verifies;
``bastion evaluate`` re-judges a registered model, the server refuses it while its newest
evaluation failed, and an approver's override lets it through; a deleted evaluation
statement makes the model unservable, not servable."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.errors import AccessDenied, ConfigError, EvaluationFailed, IntegrityError
from bastion.pipeline.verdict import EVALUATION_PREDICATE, OVERRIDE_PREDICATE
from tests.conftest import PASSPHRASE, Home, copy_home, run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "loan-default"
LOOSE = {
    "fairness": {"resamples": 200, "gates": {"max_demographic_parity_difference": 1.0}},
    "membership": {
        "references": 2,
        "samples": 500,
        "resamples": 200,
        "gates": {"max_membership_auc": 0.99},
    },
}
STRICT = {**LOOSE, "membership": {**LOOSE["membership"], "gates": {"max_membership_auc": 0.2}}}


def _pipeline(folder: Path, name: str, audits: dict[str, Any]) -> Path:
    doc = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())
    doc["data"]["sources"]["train"]["path"] = str(EXAMPLE / "data" / "loans.csv")
    doc["audits"] = audits
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("audit-gates")
    return {n: _pipeline(folder, n, a) for n, a in (("loose", LOOSE), ("strict", STRICT))}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    from bastion import Workspace

    root = tmp_path_factory.mktemp("audit-gates-home")
    ws, issued = Workspace.init(root / "home", PASSPHRASE, scrypt_log_n=14)
    ws.close()
    return Home(root / "home", issued.token)


def _token(home: Home, role: str) -> str:
    with home.open() as ws:
        return ws.create_token(role).token


def _statement(ws: Any, sid: str) -> dict[str, Any]:
    from bastion.security.signing import trusted_keys, verify_statement

    return verify_statement(ws.statements.get(sid), trusted_keys(ws.keyring))


def _actions(ws: Any, action: str) -> list[Any]:
    return ws.audit.entries(action=action, newest_first=True, limit=100)


def test_a_failed_audit_gate_holds_the_release_and_signs_a_failed_evaluation(
    home: Home, files: dict[str, Path]
) -> None:
    res = run_cli(["run", str(files["strict"]), "--json"], home.env(), timeout=600)
    assert res.code == 1, res.err
    out = res.json()
    assert out["status"] == "failed" and out["model"] is None
    failed = [g for g in out["gates"] if not g["passed"]]
    assert [(g["stage"], g["gate"]) for g in failed] == [("audit.membership", "max_membership_auc")]
    assert {g["stage"] for g in out["gates"]} == {"evaluate", "audit.fairness", "audit.membership"}
    with home.open() as ws:
        ev = _statement(ws, out["evaluation"])
        assert ev["predicateType"] == EVALUATION_PREDICATE
        assert ev["predicate"]["passed"] is False and ev["predicate"]["model"] is None
        names = {s["name"] for s in ev["subject"]}
        assert names == {
            "model",
            "evaluate.result",
            "audit.fairness.result",
            "audit.membership.result",
        }
        assert _actions(ws, "gates.fail")[0].details["stage"] == "audit.membership"
        assert ws.models.list() == []


def test_only_an_approver_can_override_and_it_is_signed_audited_and_released(
    home: Home, files: dict[str, Path]
) -> None:
    engineer = _token(home, "ml-engineer")
    reason = "membership AUC gate mis-set for this demo; accepted by the review board"
    res = run_cli(
        ["run", str(files["strict"]), "--override-gates", reason],
        home.env(BASTION_TOKEN=engineer),
        timeout=600,
    )
    assert res.code == 1 and "model:approve" in res.err, res.err
    short = run_cli(["run", str(files["strict"]), "--override-gates", "ok"], home.env())
    assert short.code == 2 and "at least" in short.err
    res = run_cli(
        ["run", str(files["strict"]), "--override-gates", reason, "--json"], home.env(), timeout=600
    )
    assert res.code == 0, res.err
    out = res.json()
    assert out["model"] == "loan-default:1"
    assert out["override"]["reason"] == reason
    with home.open() as ws:
        rec = ws.models.get("loan-default:1")
        verified = ws.models.verify("loan-default:1")  # the override satisfies the chain check
        release = _statement(ws, rec.statement_id)["predicate"]
        assert release["passed"] is False and release["override"]["reason"] == reason
        ev = _statement(ws, release["evaluation"])  # the release names its evaluation
        assert ev["predicate"]["override"]["by"] == ws.identity.principal
        assert {s["digest"]["sha256"] for s in ev["subject"]} >= {rec.digest}
        assert _actions(ws, "gates.override")[0].details["reason"] == reason
        current = ws.evaluations.require_passed(rec)
        assert current is not None and current.override is not None
        assert verified.record.digest == rec.digest


def test_evaluate_rejudges_the_server_refuses_and_an_approver_overrides(
    home: Home, files: dict[str, Path], tmp_path: Path
) -> None:
    res = run_cli(["run", str(files["loose"]), "--json"], home.env(), timeout=600)
    assert res.code == 0, res.err
    ref = res.json()["model"]
    # the same model bytes keep loan-default:1, whose signed pipeline file is the strict one
    assert ref == "loan-default:1"
    good = run_cli(
        ["evaluate", ref, "--pipeline", str(files["loose"]), "--json"], home.env(), timeout=600
    )
    assert good.code == 0, good.err
    assert good.json()["passed"] is True and Path(good.json()["report"]).is_file()
    bad = run_cli(
        ["evaluate", ref, "--pipeline", str(files["strict"]), "--json"], home.env(), timeout=600
    )
    assert bad.code == 1, bad.err
    assert any("max_membership_auc" in f for f in bad.json()["failed"])
    with home.open() as ws:
        rec = ws.models.get(ref)
        with pytest.raises(EvaluationFailed, match="bastion models approve"):
            ws.evaluations.require_passed(rec)
    shown = run_cli(["models", "show", ref, "--json"], home.env()).json()["evaluation"]
    assert shown["passed"] is False and not shown["overridden"] and shown["failed"]
    served = run_cli(["serve", ref, "--port", "0", "--tls-self-signed"], home.env(), timeout=120)
    assert served.code == 1 and "evaluation" in served.err, served.err

    for role in ("ml-engineer", "consumer"):
        with pytest.raises(AccessDenied), home.open(_token(home, role)) as ws:
            ws.evaluations.approve(ref, "looks fine to me, really it does")
    approver = _token(home, "approver")
    with home.open(approver) as ws, pytest.raises(ConfigError, match="reason"):
        ws.evaluations.approve(ref, "fine")
    reason = "re-evaluated with an experimental gate; the release review accepts it"
    ok = run_cli(
        ["models", "approve", ref, "--reason", reason, "--json"], home.env(BASTION_TOKEN=approver)
    )
    assert ok.code == 0, ok.err
    with home.open(approver) as ws:
        rec = ws.models.get(ref)
        ev = ws.evaluations.require_passed(rec)
        assert ev is not None and ev.override is not None and ev.override["reason"] == reason
        assert _statement(ws, ok.json()["override"])["predicateType"] == OVERRIDE_PREDICATE
        assert ws.evaluations.show(ref).override["by"] == ws.identity.principal
        with pytest.raises(ConfigError, match="already overridden"):
            ws.evaluations.approve(ref, reason)

    # the newest evaluation's statement deleted: the model is refused, not waved through
    copy = copy_home(home, tmp_path / "copy")
    with copy.open() as ws:
        import sqlalchemy as sa

        from bastion.security.schema import statement_subjects, statements

        sid = ws.evaluations.current(ws.models.get(ref)).statement
        with ws.engine.begin() as conn:
            conn.execute(
                sa.delete(statement_subjects).where(statement_subjects.c.statement_id == sid)
            )
            conn.execute(sa.delete(statements).where(statements.c.id == sid))
        with pytest.raises(IntegrityError, match="missing"):
            ws.evaluations.require_passed(ws.models.get(ref))
    shutil.rmtree(copy.path)
