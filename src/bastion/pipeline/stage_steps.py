"""One stage of a run, with every control on, whatever the stage does.

:meth:`StageSteps.run_stage` hashes the stage's identity (its name, code version,
configuration fingerprint, input digests, seed and, for ingest stages, the source bytes'
digest); reuses it from the cache when that key was seen before and every output is still
in the store; otherwise loads its inputs from the encrypted store (verified), runs it,
stores each output encrypted, and signs an in-toto statement whose subjects are the output
digests and whose materials are the input digests (and pinned sources). Start, finish,
cache reuse and failure are audited.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from bastion.errors import Error
from bastion.pipeline import cache, provenance
from bastion.pipeline.provenance import STAGE_PREDICATE
from bastion.pipeline.record import StageRecord, last_passed_output
from bastion.pipeline.run_state import RunState
from bastion.spec.stage import KINDS, Stage, StageContext, encode

__all__ = ["StageSteps"]


class StageSteps(RunState):
    """The steps of one stage: inputs, cache, run, store, sign, audit."""

    def _inputs(self, stage: Stage) -> tuple[dict[str, str], dict[str, str]]:
        """(input name → digest, input name → "stage.output" key), the baseline included."""
        inputs = {name: self.produced[key][0] for name, key in stage.inputs.items()}
        input_keys = dict(stage.inputs)
        if stage.baseline_output is not None:
            baseline = last_passed_output(
                self.ws.engine,
                self.ws.store,
                self.p.config.name,
                stage.name,
                stage.baseline_output,
            )
            if baseline is not None:
                inputs["baseline"] = baseline
                input_keys["baseline"] = f"{stage.name}.{stage.baseline_output}@last-passed-run"
                self.produced[input_keys["baseline"]] = (baseline, "json")
        return inputs, input_keys

    def _cache_key(self, stage: Stage, inputs: Mapping[str, str]) -> str | None:
        return cache.cache_key(
            stage,
            inputs,
            pipeline_file=self.p.path,
            seed=self.p.config.seed,
            pseudonym_key=self.pseudonymizer().key_id if stage.uses_pseudonym_key else None,
            model_ref=self.summary.get("model_ref"),
        )

    def _reuse(self, stage: Stage, key: str | None, index: int, total: int) -> StageRecord | None:
        """The stage's record from the cache, or None when it must run."""
        hit = None if self.force else cache.lookup(self.ws.engine, self.ws.store, key)
        if hit is None:
            return None
        rec = StageRecord(stage.name, cached=True, status="done")
        rec.outputs, rec.statement = hit
        for name, digest in rec.outputs.items():
            self.produced[f"{stage.name}.{name}"] = (digest, stage.outputs[name])
        self.audit(
            "stage.cached", f"stage:{stage.name}", "ok", {"key": key, "outputs": rec.outputs}
        )
        self.progress(stage.name, "cached", index, total)
        return rec

    def _context(self, stage: Stage) -> StageContext:
        return StageContext(
            config=self.p.config,
            base_dir=self.p.path.parent,
            seed=self.p.config.seed,
            actor=self.actor,
            run_id=self.run_id,
            event=lambda action, outcome, details: self.audit(
                action, f"stage:{stage.name}", outcome, details
            ),
            summary=self.summary,
            pseudonymizer=self.pseudonymizer() if stage.uses_pseudonym_key else None,
            on_progress=self._steps_of(stage.name),
            pipeline_file=str(self.p.path),
            pipeline_raw=self.p.raw,
        )

    def _steps_of(self, stage: str) -> Callable[[int, int, str], None] | None:
        steps = self.steps
        if steps is None:
            return None
        return lambda done, total, what: steps(stage, done, total, what)

    def _store_outputs(
        self,
        stage: Stage,
        outputs: Mapping[str, Any],
        values: Mapping[str, Any],
        inputs: Mapping[str, str],
        input_keys: Mapping[str, str],
    ) -> dict[str, str]:
        """Store each output encrypted; output name → digest."""
        missing = set(stage.outputs) - set(outputs)
        if missing:
            raise Error(f"stage {stage.name} did not produce {sorted(missing)}")
        # an output that IS one of the inputs (a stage that changed nothing) keeps the
        # input's digest: it is already stored and verified, no need to encode it again
        passed = {id(values[n]): (inputs[n], self.produced[k][1]) for n, k in input_keys.items()}
        stored: dict[str, str] = {}
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
            stored[name] = digest
            self.produced[f"{stage.name}.{name}"] = (digest, kind)
            self.values[f"{stage.name}.{name}"] = outputs[name]
        return stored

    def _attest_stage(self, stage: Stage, rec: StageRecord, materials: list[dict[str, str]]) -> str:
        """Sign the stage's statement: its outputs, from its materials."""
        self.materials[stage.name] = materials
        return self.ws.attest(
            [(f"{stage.name}.{n}", d) for n, d in sorted(rec.outputs.items())],
            STAGE_PREDICATE,
            provenance.stage_predicate(
                pipeline=self.p.config.name,
                run_id=self.run_id,
                stage=stage.name,
                version=stage.version,
                config_digest=self.p.config_digest,
                fingerprint=stage.fingerprint(),
                materials=materials,
                seed=self.p.config.seed,
            ),
            actor=self.actor,
        )

    def _fail(self, stage: Stage, rec: StageRecord, exc: Error, t0: float, i: int, n: int) -> None:
        rec.status, rec.error = "failed", str(exc)
        rec.seconds = time.perf_counter() - t0
        self.audit(
            "stage.fail",
            f"stage:{stage.name}",
            "failed",
            {"error": str(exc)[:500], "kind": type(exc).__name__},
        )
        self.settle()
        self.progress(stage.name, "failed", i, n)

    def run_stage(self, stage: Stage, index: int, total: int) -> StageRecord:
        inputs, input_keys = self._inputs(stage)
        key = self._cache_key(stage, inputs)
        t0 = time.perf_counter()
        reused = self._reuse(stage, key, index, total)
        if reused is not None:
            return reused
        rec = StageRecord(stage.name)
        self.progress(stage.name, "running", index, total)
        self.audit("stage.start", f"stage:{stage.name}", "started", {"inputs": inputs})
        ctx = self._context(stage)
        try:
            values = {name: self.value(k) for name, k in input_keys.items()}
            outputs = stage.run(ctx, values)
            self.settle()  # entries so far are durable before anything else is written
            rec.outputs = self._store_outputs(stage, outputs, values, inputs, input_keys)
        except Error as exc:
            self._fail(stage, rec, exc, t0, index, total)
            raise
        materials = provenance.stage_materials(inputs, input_keys, ctx.materials)
        rec.statement = self._attest_stage(stage, rec, materials)
        if key is not None:
            cache.insert(self.ws.engine, key, stage.name, rec.outputs, rec.statement, self.run_id)
        rec.status, rec.seconds = "done", time.perf_counter() - t0
        self.audit(
            "stage.finish",
            f"stage:{stage.name}",
            "ok",
            {"outputs": rec.outputs, "statement": rec.statement, "seconds": round(rec.seconds, 3)},
        )
        self.progress(stage.name, "done", index, total)
        return rec
