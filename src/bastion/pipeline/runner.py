"""The runner: turns a pipeline file into stages and runs them with every control on.

For each stage, in order, the runner — not the stage —

1. hashes the stage's identity: its name, code version, configuration fingerprint, the
   digests of its inputs, the seed and, for ingest stages, the digest of the source bytes;
2. reuses the stage from the cache when that key was seen before and every output is still
   in the store (a no-change rerun touches no data);
3. otherwise loads its inputs from the encrypted store (verified), runs it, stores each
   output encrypted, and signs an in-toto statement whose subjects are the output digests
   and whose materials are the input digests (and pinned sources);
4. audits start, finish, cache reuse and failure.

After ``evaluate`` the gates decide: a failed gate ends the run ``failed`` (exit 1) with
everything stored and reported, and nothing released. ``release`` registers the model as
``NAME:VERSION`` (a rerun that yields the same model bytes reuses its version) and signs a
release statement that names the statement of every stage — the provenance chain that
:mod:`bastion.pipeline.registry` checks before a model is ever deserialised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bastion._fs import atomic_write, private_dir
from bastion.errors import ConfigError, Error, GateFailed
from bastion.pipeline.config import PipelineConfig
from bastion.pipeline.stage import KINDS, Kind, Stage, StageContext, decode, encode
from bastion.store.db import models, runs, stage_cache

if TYPE_CHECKING:
    from bastion.workspace import Workspace


log = logging.getLogger("bastion.pipeline")
__all__ = [
    "RELEASE_PREDICATE",
    "STAGE_PREDICATE",
    "Pipeline",
    "RunResult",
    "StageRecord",
    "gate_failure",
]

STAGE_PREDICATE = "https://bastion.dev/provenance/stage/v1"
RELEASE_PREDICATE = "https://bastion.dev/provenance/release/v1"
_PACKAGES = ("bastion-ml", "numpy", "pandas", "pyarrow", "scikit-learn", "skops", "cryptography")

Progress = Callable[[str, str, int, int], None]
"""``progress(stage, state, index, total)`` with state in running | cached | done | failed."""


@dataclass
class StageRecord:
    """What happened to one stage in one run."""

    name: str
    cached: bool = False
    status: str = "pending"  # pending | done | failed | skipped
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)  # output name → digest
    statement: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The stage as the run record, the report and ``bastion run --json`` show it."""
        return {
            "name": self.name,
            "status": self.status,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
            "outputs": self.outputs,
            "statement": self.statement,
            "error": self.error,
        }


@dataclass
class RunResult:
    """The run record ``bastion run --json`` prints."""

    run_id: str
    status: str  # passed | failed
    model: str | None
    gates: list[dict[str, Any]]
    report: Path | None
    stages: list[StageRecord]
    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "model": self.model,
            "gates": self.gates,
            "report": str(self.report) if self.report else None,
            "stages": [s.to_json() for s in self.stages],
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Pipeline:
    """A validated pipeline file, ready to run in a workspace."""

    def __init__(self, config: PipelineConfig, raw: bytes, path: Path) -> None:
        self.config = config
        self.raw = raw
        self.path = path
        self.config_digest = hashlib.sha256(raw).hexdigest()

    @classmethod
    def from_yaml(cls, path: str | Path) -> Pipeline:
        """Load and validate a pipeline file (errors name the file, line and key)."""
        from bastion.pipeline.loader import load_pipeline

        path = Path(path)
        config, raw = load_pipeline(path)
        return cls(config, raw, path)

    # -- the stage graph --------------------------------------------------------------

    def stages(self) -> list[Stage]:
        """The stages in run order."""
        from bastion.stages.evaluate import EvaluateStage
        from bastion.stages.features import FeaturesStage
        from bastion.stages.ingest import IngestStage
        from bastion.stages.pii import PiiStage
        from bastion.stages.release import ReleaseStage
        from bastion.stages.screen import ScreenStage, ShiftStage
        from bastion.stages.split import SplitStage
        from bastion.stages.train import TrainStage
        from bastion.stages.validate import ValidateStage

        cfg = self.config
        names = list(cfg.data.sources)
        training = [n for n in names if n != cfg.split.test_source]
        out: list[Stage] = [IngestStage(n, cfg.data.sources[n]) for n in names]
        out += [ValidateStage(n, cfg.data) for n in names]
        out += [PiiStage(n, cfg.data) for n in names]
        out += [ScreenStage(n, cfg.data) for n in training]
        out += [ShiftStage(n, cfg.data) for n in training]
        tables = {n: f"screen.{n}.table" if n in training else f"pii.{n}.table" for n in names}
        out += [
            SplitStage(cfg.split, cfg.data.label.column, names, tables),
            FeaturesStage(cfg.features, cfg.data),
            TrainStage(cfg.model, cfg.data.label),
            EvaluateStage(cfg.evaluate, cfg.data.label, list(cfg.data.sensitive)),
            ReleaseStage(cfg.release, training),
        ]
        return out

    # -- running ----------------------------------------------------------------------

    def run(
        self,
        workspace: Workspace,
        *,
        progress: Progress | None = None,
        force: bool = False,
    ) -> RunResult:
        """Run every stage (reusing cached ones unless ``force``); return the run record.

        Needs ``pipeline:run`` (checked by ``workspace.authorize``, a refusal audited); the
        run is recorded, signed and audited as the workspace's authenticated principal.
        A failed gate gives a result with status ``failed``; other failures raise.
        """
        actor = workspace.authorize("pipeline:run").principal
        return _Run(self, workspace, actor, progress, force).execute()


class _Run:
    def __init__(
        self, pipeline: Pipeline, ws: Workspace, actor: str, progress: Progress | None, force: bool
    ) -> None:
        self.p = pipeline
        self.ws = ws
        self.actor = actor
        self.progress = progress or (lambda _n, _s, _i, _t: None)
        self.force = force
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.run_id = f"{stamp}-{secrets.token_hex(4)}"
        self.produced: dict[str, tuple[str, Kind]] = {}  # "stage.output" → (digest, kind)
        self.values: dict[str, Any] = {}
        self.records: list[StageRecord] = []
        self.statements: dict[str, str] = {}
        self.summary: dict[str, Any] = {"config_digest": pipeline.config_digest}
        self.materials: dict[str, list[dict[str, str]]] = {}
        self.config_ref = ""  # digest of the pipeline file, stored at the start of the run
        self.previous_release: str | None = None  # release statement of the version before
        self._pseudo: Any = None
        self._pending: list[Future[int]] = []  # audit entries queued, not yet confirmed

    # -- helpers ----------------------------------------------------------------------

    def _audit(
        self,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        # queued, not awaited: the writer group-commits them while the stage works;
        # :meth:`_settle` confirms them before the run writes anything else (a stage's
        # outputs, a registration, the run's end), so an audit failure still stops the run
        self._pending.append(
            self.ws.audit.submit(
                self.actor, action, resource, outcome, {"run": self.run_id, **(details or {})}
            )
        )

    def _settle(self) -> None:
        """Wait until every queued audit entry is durable; AuditError if one is not."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _value(self, key: str) -> Any:
        if key not in self.values:
            digest, kind = self.produced[key]
            self.values[key] = decode(kind, self.ws.store.read_bytes(digest))
        return self.values[key]

    def _environment(self) -> dict[str, Any]:
        versions: dict[str, str | None] = {}
        for name in _PACKAGES:
            try:
                versions[name] = importlib_metadata.version(name)
            except importlib_metadata.PackageNotFoundError:
                versions[name] = None
        return {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "packages": versions,
            "git_commit": _git_commit(self.p.path.parent),
        }

    def _external_digest(self, stage: Stage) -> str | None:
        """Ingest stages: the digest of the source bytes, so a changed file is never cached."""
        source = getattr(stage, "source", None)
        if source is None or getattr(source, "format", None) not in ("csv", "parquet"):
            return None
        path = (self.p.path.parent / source.path).resolve()
        try:
            return _sha256_file(path)
        except FileNotFoundError:
            raise ConfigError(
                f"{self.p.path}: data source file {source.path} not found (looked in {path})"
            ) from None

    def _baseline(self, stage: Stage) -> str | None:
        """The digest of ``stage``'s ``baseline_output`` in the newest passed run, if any."""
        output = getattr(stage, "baseline_output", None)
        if output is None:
            return None
        with self.ws.engine.connect() as conn:
            rows = conn.execute(
                sa.select(runs.c.record)
                .where(runs.c.pipeline == self.p.config.name, runs.c.status == "passed")
                .order_by(runs.c.started.desc())
                .limit(20)
            ).all()
        for (record,) in rows:
            for rec in json.loads(record).get("stages", []):
                digest = (
                    rec.get("outputs", {}).get(output) if rec.get("name") == stage.name else None
                )
                if digest and self.ws.store.exists(digest):
                    return str(digest)
        return None

    def _cache_key(self, stage: Stage, inputs: Mapping[str, str]) -> str | None:
        source = getattr(stage, "source", None)
        if source is not None and (source.format == "sql" or source.sha256 is None):
            return None  # SQL and unsafe_unpinned sources are re-read (and re-audited) each run
        external = self._external_digest(stage)
        if getattr(stage, "uses_pseudonym_key", False):
            external = f"{external}|pseudonym:{self._pseudonymizer().key_id}"
        return hashlib.sha256(
            _canonical(
                {
                    "stage": stage.name,
                    "version": stage.version,
                    "config": stage.fingerprint(),
                    "inputs": dict(inputs),
                    "external": external,
                    "seed": self.p.config.seed,
                    "model_ref": self.summary.get("model_ref") if stage.name == "release" else None,
                }
            )
        ).hexdigest()

    def _cached(self, key: str | None) -> tuple[dict[str, str], str] | None:
        if key is None or self.force:
            return None
        with self.ws.engine.connect() as conn:
            row = conn.execute(sa.select(stage_cache).where(stage_cache.c.key == key)).first()
        if row is None:
            return None
        outputs: dict[str, str] = json.loads(row.outputs)
        if not all(self.ws.store.exists(d) for d in outputs.values()):
            return None
        return outputs, row.statement_id

    # -- one stage --------------------------------------------------------------------

    def _pseudonymizer(self) -> Any:
        if self._pseudo is None:
            from bastion.defenses.pii import KeyringPseudonymizer

            self._pseudo = KeyringPseudonymizer(self.ws.keyring)
        return self._pseudo

    def _run_stage(self, stage: Stage, index: int, total: int) -> StageRecord:
        rec = StageRecord(stage.name)
        inputs = {name: self.produced[key][0] for name, key in stage.inputs.items()}
        input_keys = dict(stage.inputs)
        baseline = self._baseline(stage)
        if baseline is not None:
            inputs["baseline"] = baseline
            input_keys["baseline"] = f"{stage.name}.{stage.baseline_output}@last-passed-run"  # type: ignore[attr-defined]
            self.produced[input_keys["baseline"]] = (baseline, "json")
        key = self._cache_key(stage, inputs)
        hit = self._cached(key)
        t0 = time.perf_counter()
        if hit is not None:
            rec.outputs, rec.statement = hit
            rec.cached, rec.status = True, "done"
            for name, digest in rec.outputs.items():
                self.produced[f"{stage.name}.{name}"] = (digest, stage.outputs[name])
            self._audit(
                "stage.cached", f"stage:{stage.name}", "ok", {"key": key, "outputs": rec.outputs}
            )
            self.progress(stage.name, "cached", index, total)
            return rec
        self.progress(stage.name, "running", index, total)
        self._audit("stage.start", f"stage:{stage.name}", "started", {"inputs": inputs})
        ctx = StageContext(
            config=self.p.config,
            base_dir=self.p.path.parent,
            seed=self.p.config.seed,
            actor=self.actor,
            run_id=self.run_id,
            event=lambda action, outcome, details: self._audit(
                action, f"stage:{stage.name}", outcome, details
            ),
            summary=self.summary,
            pseudonymizer=self._pseudonymizer()
            if getattr(stage, "uses_pseudonym_key", False)
            else None,
        )
        try:
            values = {name: self._value(k) for name, k in input_keys.items()}
            outputs = stage.run(ctx, values)
            self._settle()  # entries so far are durable before anything else is written
            missing = set(stage.outputs) - set(outputs)
            if missing:
                raise Error(f"stage {stage.name} did not produce {sorted(missing)}")
            # an output that IS one of the inputs (a stage that changed nothing) keeps the
            # input's digest: it is already stored and verified, no need to encode it again
            passed = {
                id(values[n]): (inputs[n], self.produced[k][1]) for n, k in input_keys.items()
            }
            for name, kind in stage.outputs.items():
                same = passed.get(id(outputs[name]))
                if same is not None and same[1] == kind:
                    digest = same[0]
                else:
                    digest = self.ws.store.put(
                        encode(kind, outputs[name]),
                        actor=self.actor,
                        media_type=KINDS[kind],
                        name=f"{self.p.config.name}/{stage.name}/{name}",
                    ).digest
                rec.outputs[name] = digest
                self.produced[f"{stage.name}.{name}"] = (digest, kind)
                self.values[f"{stage.name}.{name}"] = outputs[name]
        except Error as exc:
            rec.status, rec.error = "failed", str(exc)
            rec.seconds = time.perf_counter() - t0
            self._audit(
                "stage.fail",
                f"stage:{stage.name}",
                "failed",
                {"error": str(exc)[:500], "kind": type(exc).__name__},
            )
            self._settle()
            self.progress(stage.name, "failed", index, total)
            raise
        materials = [
            {"name": f"{input_keys[n]}", "sha256": d, "kind": "artifact"}
            for n, d in sorted(inputs.items())
        ]
        materials += [
            {"name": m.name, "sha256": m.sha256, "uri": m.uri, "kind": "source"}
            for m in ctx.materials
        ]
        self.materials[stage.name] = materials
        rec.statement = self.ws.attest(
            [(f"{stage.name}.{n}", d) for n, d in sorted(rec.outputs.items())],
            STAGE_PREDICATE,
            {
                "pipeline": self.p.config.name,
                "run_id": self.run_id,
                "stage": stage.name,
                "version": stage.version,
                "config_digest": self.p.config_digest,
                "fingerprint": hashlib.sha256(_canonical(stage.fingerprint())).hexdigest(),
                "materials": materials,
                "seed": self.p.config.seed,
            },
            actor=self.actor,
        )
        if key is not None:
            with self.ws.engine.begin() as conn:
                conn.execute(sa.delete(stage_cache).where(stage_cache.c.key == key))
                conn.execute(
                    sa.insert(stage_cache).values(
                        key=key,
                        stage=stage.name,
                        outputs=json.dumps(rec.outputs),
                        statement_id=rec.statement,
                        run_id=self.run_id,
                        created=_now(),
                    )
                )
        rec.status, rec.seconds = "done", time.perf_counter() - t0
        self._audit(
            "stage.finish",
            f"stage:{stage.name}",
            "ok",
            {"outputs": rec.outputs, "statement": rec.statement, "seconds": round(rec.seconds, 3)},
        )
        self.progress(stage.name, "done", index, total)
        return rec

    # -- registration -----------------------------------------------------------------

    def _model_ref(self) -> tuple[str, int, bool]:
        """(name, version, new?) for the model just trained: same bytes → same version.

        Numbered from the signed, audited history of the name (a damaged one is refused);
        the release statement before it is kept for :meth:`_register` to chain onto."""
        name = self.p.config.release.name
        digest = self.produced["train.model"][0]
        version, new, self.previous_release = self.ws.models.next_release(name, digest)
        return name, version, new

    def _register(self, name: str, version: int, new: bool, metrics: Mapping[str, Any]) -> str:
        """Sign the release statement, the source of truth for the model's version and
        contract; a new version's row and its audit entry commit in one transaction."""
        self._settle()
        digest = self.produced["train.model"][0]
        train_table = self.produced["split.train"][0]
        ref = f"{name}:{version}"
        chain = {r.name: r.statement for r in self.records if r.statement}
        subjects = [
            (ref, digest),
            (f"{ref}/pipeline.yaml", self.config_ref),
            (f"{ref}/train_table", train_table),
        ] + [(f"{ref}/{n}", d) for n, d in sorted(self.records[-1].outputs.items())]
        statement = self.ws.attest(
            subjects,
            RELEASE_PREDICATE,
            {
                "model": ref,
                "name": name,
                "version": version,
                "previous": self.previous_release,
                "run_id": self.run_id,
                "pipeline": self.p.config.name,
                "config_digest": self.p.config_digest,
                "stages": chain,
                "gates": metrics.get("gates", []),
                "metrics": dict(metrics.get("metrics", {})),
                "passed": bool(metrics.get("passed")),
            },
            actor=self.actor,
        )
        if new:
            record = {  # shown by `bastion models list`; the contract is read from the release
                "metrics": dict(metrics.get("metrics", {})),
                "gates": metrics.get("gates", []),
                "card": self.records[-1].outputs,
                "estimator": self.p.config.model.estimator,
                "stages": chain,
                "config": self.config_ref,
                "train_table": train_table,
            }
            with self.ws.engine.begin() as conn:
                row = {
                    "name": name,
                    "version": version,
                    "digest": digest,
                    "statement_id": statement,
                    "run_id": self.run_id,
                    "status": "registered",
                    "created": _now(),
                    "record": json.dumps(record, default=str),
                }
                conn.execute(sa.insert(models).values(**self.ws.rows.sealed("models", row)))
                self.ws.audit.record_in(
                    conn,
                    self.actor,
                    "model.register",
                    f"model:{ref}",
                    "ok",
                    {"run": self.run_id, "digest": digest, "statement": statement},
                )
        return ref

    # -- the whole run ----------------------------------------------------------------

    def execute(self) -> RunResult:
        cfg = self.p.config
        started = _now()
        record: dict[str, Any] = {
            "run_id": self.run_id,
            "pipeline": cfg.name,
            "pipeline_file": str(self.p.path),
            "config_digest": self.p.config_digest,
            "actor": self.actor,
            "started": started,
            "seed": cfg.seed,
            "environment": self._environment(),
        }
        self._audit(
            "run.start", f"pipeline:{cfg.name}", "started", {"config_digest": self.p.config_digest}
        )
        self._settle()
        self.config_ref = self.ws.store.put(
            self.p.raw,
            actor=self.actor,
            media_type="application/yaml",
            name=f"{cfg.name}/pipeline.yaml",
        ).digest
        record["config_artifact"] = self.config_ref
        with self.ws.engine.begin() as conn:
            conn.execute(
                sa.insert(runs).values(
                    id=self.run_id,
                    pipeline=cfg.name,
                    config_digest=self.p.config_digest,
                    status="running",
                    actor=self.actor,
                    started=started,
                    record=json.dumps(record, default=str),
                )
            )
        status, model_ref, gates = "error", None, []
        metrics: Mapping[str, Any] = {}
        stages = self.p.stages()
        for stage in stages:
            unsafe = getattr(stage, "unsafe", None)
            for setting in unsafe() if callable(unsafe) else []:
                log.warning("%s: running with %s", stage.name, setting)
                self._audit("unsafe.setting", f"stage:{stage.name}", "ok", {"setting": setting})
        try:
            for i, stage in enumerate(stages):
                if stage.name == "release":
                    if not metrics.get("passed"):
                        self.records.append(StageRecord(stage.name, status="skipped"))
                        continue
                    name, version, new = self._model_ref()
                    self.summary["model_ref"] = f"{name}:{version}"
                rec = self._run_stage(stage, i, len(stages))
                self.records.append(rec)
                if stage.name == "evaluate":
                    metrics = self._value("evaluate.metrics")
                    gates = list(metrics.get("gates", []))
                    if not metrics.get("passed"):
                        self._audit(
                            "gates.fail",
                            f"pipeline:{cfg.name}",
                            "failed",
                            {"failed": [g for g in gates if not g.get("passed")]},
                        )
                if stage.name == "release":
                    model_ref = self._register(name, version, new, metrics)
            status = "passed" if metrics.get("passed") else "failed"
        except Error as exc:
            record["error"] = str(exc)
            self._finish(record, "error", None, gates)
            raise
        except BaseException as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
            self._finish(record, "error", None, gates)
            raise
        report = self._report(record, metrics, status, model_ref, gates)
        self._finish(record, status, model_ref, gates, report)
        return RunResult(self.run_id, status, model_ref, gates, report, self.records, record)

    def _report(
        self,
        record: dict[str, Any],
        metrics: Mapping[str, Any],
        status: str,
        model_ref: str | None,
        gates: list[dict[str, Any]],
    ) -> Path | None:
        from bastion.compliance.report import render_run_report

        validation: dict[str, Any] = {}  # per source: validate's report, + pii/screen/shift
        for key in self.produced:  # in run order: validate.<source> comes first
            kind, _, rest = key.partition(".")
            if kind in ("validate", "pii", "screen", "shift") and rest.endswith(".report"):
                source = rest.removesuffix(".report")
                if kind == "validate":
                    validation[source] = dict(self._value(key))
                else:
                    validation.setdefault(source, {})[kind] = self._value(key)
        run = dict(
            record,
            status=status,
            model=model_ref,
            gates=gates,
            stages=[r.to_json() for r in self.records],
        )
        out_dir = self.ws.home / "reports" / self.run_id
        private_dir(out_dir)
        for output, filename in (("card_md", "model_card.md"), ("card_html", "model_card.html")):
            if f"release.{output}" in self.produced:  # the card beside the report
                atomic_write(out_dir / filename, self._value(f"release.{output}").encode())
        return render_run_report(
            run, metrics, validation, out_dir, plot_cache=self.ws.home / "reports" / ".plots"
        )

    def _finish(
        self,
        record: dict[str, Any],
        status: str,
        model_ref: str | None,
        gates: list[dict[str, Any]],
        report: Path | None = None,
    ) -> None:
        record.update(
            finished=_now(),
            status=status,
            model=model_ref,
            gates=gates,
            report=str(report) if report else None,
            stages=[r.to_json() for r in self.records],
        )
        with self.ws.engine.begin() as conn:
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == self.run_id)
                .values(
                    status=status,
                    finished=record["finished"],
                    record=json.dumps(record, default=str),
                )
            )
        self._audit(
            "run.finish",
            f"pipeline:{self.p.config.name}",
            {"passed": "ok", "failed": "failed"}.get(status, "error"),
            {"status": status, "model": model_ref},
        )
        self._settle()


def _git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def gate_failure(result: RunResult) -> GateFailed:
    """The error a shell raises for a run whose gates failed."""
    failed = [g for g in result.gates if not g.get("passed")]
    return GateFailed(
        f"run {result.run_id}: {len(failed)} gate(s) failed",
        [f"{g.get('gate')}: {g.get('value')} vs {g.get('threshold')}" for g in failed],
    )
