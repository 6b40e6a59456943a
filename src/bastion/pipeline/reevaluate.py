"""``bastion evaluate NAME[:VERSION]``: evaluate a registered model again and sign it.

The model is verified (signature and provenance chain) before it is deserialised; its
training table comes from its signed release, its test table from the signed ``split``
statement in its chain, and the pipeline file from the release (or a newer file given by
the caller: new audits and gates, the same model and data). The evaluate stage and every
audit of that file run as in a pipeline run; each result is stored encrypted, and one new
evaluation statement signs them (:func:`bastion.pipeline.evaluation.sign_evaluation`).
From then on that evaluation decides whether the server serves the model.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import ConfigError, IntegrityError
from bastion.pipeline.verdict import EvaluationReport, combine, sign_evaluation
from bastion.spec.stage import KINDS, Stage, StageContext, decode, encode

if TYPE_CHECKING:
    from bastion.spec.config import PipelineConfig
    from bastion.workspace import Workspace

__all__ = ["reevaluate"]

_TEST_TABLE = "split.test"


def _test_table(chain: list[dict[str, Any]], ref: str) -> str:
    for statement in chain:
        for subject in statement.get("subject", []):
            if subject.get("name") == _TEST_TABLE:
                return str(subject["digest"]["sha256"])
    raise IntegrityError(f"model {ref}: its verified chain names no {_TEST_TABLE} table")


def _config(ws: Workspace, config_digest: str, pipeline_file: Path | None) -> PipelineConfig:
    from bastion.spec.loader import parse_pipeline

    stored = parse_pipeline(
        ws.store.read_bytes(config_digest), f"stored pipeline file {config_digest}", check_env=False
    )
    if pipeline_file is None:
        return stored
    from bastion.pipeline.runner import Pipeline

    given = Pipeline.from_yaml(pipeline_file).config
    if given.data.label != stored.data.label:
        raise ConfigError(
            f"{pipeline_file}: data.label differs from the one the model was trained with"
            f" ({stored.data.label.column!r}, positive {stored.data.label.positive!r})"
        )
    return given


def _gating_stages(config: PipelineConfig) -> list[Stage]:
    from bastion.stages.audit import AuditStage
    from bastion.stages.evaluate import EvaluateStage

    cfg = config
    out: list[Stage] = [EvaluateStage(cfg.evaluate, cfg.data.label, list(cfg.data.sensitive))]
    out += [
        AuditStage(n, a, cfg.data, fairness=cfg.evaluate.fairness, workers=cfg.audits.workers)
        for n, a in cfg.audits.enabled().items()
    ]
    return out


def reevaluate(
    ws: Workspace,
    ref: str,
    *,
    pipeline_file: Path | None = None,
    progress: Callable[[str, str, int, int], None] | None = None,
    steps: Callable[[str, int, int, str], None] | None = None,
) -> EvaluationReport:
    """See the module docstring; needs ``pipeline:run`` and ``model:read`` on the model.
    ``progress(stage, state, index, total)`` and ``steps`` as for ``Pipeline.run``."""
    from bastion.spec.serialization import load_model

    actor = ws.authorize("pipeline:run").principal
    verified = ws.models.verify(ref)
    rec, contract = verified.record, verified.contract
    if contract.train_table is None:
        raise ConfigError(
            f"model {rec.ref} was released before releases named their training table;"
            " release it again to evaluate it"
        )
    config = _config(ws, contract.config, pipeline_file)
    tables = {
        "model": load_model(ws.store.read_bytes(rec.digest)),
        "train": decode("table", ws.store.read_bytes(contract.train_table)),
        "test": decode("table", ws.store.read_bytes(_test_table(verified.chain, rec.ref))),
    }
    run_id = f"eval-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
    ws.audit.record(actor, "evaluate.start", f"model:{rec.ref}", "started", {"run": run_id})
    where = (actor, run_id, rec.ref, rec.name)
    outputs, audits, results = _run_gating(ws, config, tables, where, progress, steps)
    verdict = combine(outputs)
    statement = sign_evaluation(
        ws,
        actor,
        digest=rec.digest,
        ref=rec.ref,
        pipeline=config.name,
        results=results,
        verdict=verdict,
        run_id=run_id,
    )
    report = _report(ws, rec.ref, config.name, run_id, actor, outputs, audits, verdict, statement)
    return EvaluationReport(
        rec.ref,
        statement,
        bool(verdict["passed"]),
        list(verdict["gates"]),
        {n: dict(v) for n, v in outputs.items()},
        report,
    )


def _run_gating(
    ws: Workspace,
    config: PipelineConfig,
    tables: Mapping[str, Any],
    where: tuple[str, str, str, str],
    progress: Callable[[str, str, int, int], None] | None,
    steps: Callable[[str, int, int, str], None] | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """Run evaluate and each audit on the model's tables; (stage → result, audit name →
    result, stage → digest of the stored result). ``where``: actor, run id, ref, name."""
    actor, run_id, ref, name = where
    outputs: dict[str, Any] = {}
    audits: dict[str, Any] = {}
    results: dict[str, str] = {}
    stages = _gating_stages(config)
    for i, stage in enumerate(stages):
        ctx = _context(ws, config, actor, run_id, ref, stage.name, steps)
        if progress is not None:
            progress(stage.name, "running", i, len(stages))
        value = stage.run(ctx, {n: tables[n] for n in stage.inputs})[stage.gates_output or ""]
        if progress is not None:
            progress(stage.name, "done", i, len(stages))
        outputs[stage.name] = value
        if stage.audit_result is not None:
            audits[stage.audit_result[0]] = value
        results[stage.name] = ws.store.put(
            encode("json", value),
            actor=actor,
            media_type=KINDS["json"],
            name=f"{name}/evaluations/{run_id}/{stage.name}",
        ).digest
    return outputs, audits, results


def _context(
    ws: Workspace,
    config: PipelineConfig,
    actor: str,
    run_id: str,
    ref: str,
    stage: str,
    progress: Callable[[str, int, int, str], None] | None,
) -> StageContext:
    def event(action: str, outcome: str, details: Mapping[str, Any]) -> None:
        ws.audit.record(actor, action, f"model:{ref}", outcome, {"run": run_id, **details})

    return StageContext(
        config=config,
        base_dir=Path.cwd(),
        seed=config.seed,
        actor=actor,
        run_id=run_id,
        event=event,
        on_progress=(lambda d, t, w: progress(stage, d, t, w)) if progress else None,
    )


def _report(
    ws: Workspace,
    ref: str,
    pipeline: str,
    run_id: str,
    actor: str,
    outputs: Mapping[str, Mapping[str, Any]],
    audits: Mapping[str, Mapping[str, Any]],
    verdict: Mapping[str, Any],
    statement: str,
) -> Path:
    from bastion._fs import private_dir
    from bastion.compliance.report import render_run_report

    out_dir = ws.home / "reports" / run_id
    private_dir(out_dir)
    run = {
        "run_id": run_id,
        "pipeline": pipeline,
        "model": ref,
        "actor": actor,
        "status": "passed" if verdict["passed"] else "failed",
        "evaluation": statement,
        "gates": list(verdict["gates"]),
    }
    first = next(iter(outputs.values()), {})
    return render_run_report(
        run,
        first,
        {},
        out_dir,
        plot_cache=ws.home / "reports" / ".plots",
        audits=audits,
    )
