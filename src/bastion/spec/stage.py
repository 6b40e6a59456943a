"""The one protocol every stage follows, and the artifact kinds that flow between stages.

A stage declares its inputs and outputs; the runner — never the stage — loads inputs from
the encrypted store, hashes them, decides whether the stage can be reused from cache, runs
it, stores its outputs, signs an in-toto statement linking input digests to output digests
and audits start, finish and failure. A stage's constructor only stores configuration; the
work happens in :meth:`Stage.run`, which receives plain Python values and returns them.

Kinds and how they are stored (never pickle):

    table   pandas.DataFrame  ↔ Parquet
    json    dict / list       ↔ canonical JSON (sorted keys, UTF-8)
    model   scikit-learn estimator ↔ skops, loaded back only with an explicit type allow-list
    text    str               ↔ UTF-8 (Markdown, HTML)
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bastion._canonical import canonical_json
from bastion.errors import IntegrityError

if TYPE_CHECKING:
    from bastion.spec.config import PipelineConfig, SourceConfig

__all__ = [
    "KINDS",
    "ConfigProblem",
    "Kind",
    "Material",
    "Stage",
    "StageContext",
    "decode",
    "encode",
]

Kind = Literal["table", "json", "model", "text"]
ConfigProblem = tuple[tuple[str, ...], str]
"""A problem found in the pipeline file: (key path in the file, "what is wrong; what is
expected"); the loader cites it at that node's file:line:col."""
KINDS: dict[Kind, str] = {
    "table": "application/vnd.apache.parquet",
    "json": "application/json",
    "model": "application/vnd.skops",
    "text": "text/plain",
}


@dataclass(frozen=True, slots=True)
class Material:
    """Something a stage read from outside the store: a pinned file or query result."""

    name: str  # e.g. "source:train"
    sha256: str
    uri: str  # the path or redacted URL it came from


@dataclass
class StageContext:
    """What a running stage may know and do besides its inputs."""

    config: PipelineConfig
    base_dir: Path  # folder of the pipeline file; relative paths resolve against it
    seed: int
    actor: str
    run_id: str
    event: Callable[[str, str, Mapping[str, Any]], None]  # (action, outcome, details) → audited
    materials: list[Material] = field(default_factory=list)  # stages append what they read
    summary: dict[str, Any] = field(default_factory=dict)  # small facts for the report
    pseudonymizer: Any = None  # bastion.defenses.pii.Pseudonymizer bound to the keyring
    on_progress: Callable[[int, int, str], None] | None = None  # the runner's listener
    pipeline_file: str = ""  # the pipeline file's name and bytes, for messages that cite
    pipeline_raw: bytes = b""  # a key's file:line:col (bastion.spec.loader.locate)

    def progress(self, done: int, total: int, what: str = "") -> None:
        """Report progress inside a long stage: ``done`` of ``total`` steps (``total`` 0
        when unknown) and the current step, e.g. ``ctx.progress(2, 5, "fold 3")``. Shown
        by ``bastion run``; never stored, signed or audited; a no-op without a listener."""
        if self.on_progress is not None:
            self.on_progress(done, total, what)

    def audit(self, action: str, outcome: str = "ok", **details: Any) -> None:
        """Record an event in the audit log (e.g. an ``unsafe_`` setting being used)."""
        self.event(action, outcome, details)

    def limit_threads(self) -> AbstractContextManager[int]:
        """Wrap fit, cross-validation and predict: caps the thread pools per the pipeline's
        ``threads`` (see :mod:`bastion.threads`); yields the count used."""
        from bastion.threads import limit_threads

        return limit_threads(getattr(self.config, "threads", None))


class Stage:
    """One step of a pipeline; every stage subclasses it.

    ``inputs`` maps the stage's own input names to ``"stage.output"`` keys produced
    upstream; ``outputs`` maps output names to their :data:`Kind`. ``fingerprint`` is the
    part of the configuration that changes the result (it goes into the cache key);
    ``version`` changes when the stage's code changes its result.

    Optional hooks, each off by default, so the stages that need them say so and the
    runner — not the stage — does the work (the runner reads them; it never names a stage):

    - ``source``: a :class:`~bastion.spec.config.SourceConfig` read from outside the
      store; its bytes go into the cache key (SQL and unpinned sources are never cached);
    - ``baseline_output``: the name of one of the stage's own outputs; the runner passes
      that output of the newest passed run as the extra input ``baseline``;
    - ``uses_pseudonym_key``: true when the stage pseudonymizes; the runner sets
      ``ctx.pseudonymizer`` and puts the active pseudonym key's id in the cache key;
    - ``gates_output``: the name of the stage's output that holds the run's gates
      (``{"passed": bool, "gates": [...], "metrics": {...}}``); it decides the release;
    - ``releases``: set on the stage that releases a model: ``"model"`` and
      ``"train_table"`` → the ``"stage.output"`` keys that hold them. The runner runs it
      only when the gates passed, numbers the model's version first (given in
      ``ctx.summary["model_ref"]`` and the cache key) and signs the release after;
    - ``report_files``: output name → file name: text outputs the runner writes beside
      the run's report (the model card);
    - ``data_report``: ``(source, section)`` when the stage's ``report`` output belongs in
      the run report's section for that data source (``""``: the section's base, which the
      other stages' reports of that source join under their ``section`` name);
    - ``audit_result``: ``(audit name, output name)`` when the stage's output is an audit's
      result, which the run report shows in that audit's section;
    - ``unsafe()``: the ``unsafe_`` settings the stage runs with; the runner logs and audits
      each on every run, cached or not;
    - ``load_problems(base_dir)``: what the stage can decide from the pipeline file alone
      (an estimator's name and parameters, a source file that is missing), as
      :data:`ConfigProblem` findings; ``Pipeline.from_yaml`` refuses the file with them,
      cited at their lines, before any secret is asked for or any data is read.
    """

    name: str
    version: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, Kind]

    source: SourceConfig | None = None
    baseline_output: str | None = None
    uses_pseudonym_key: bool = False
    gates_output: str | None = None
    releases: Mapping[str, str] | None = None
    report_files: Mapping[str, str] = {}
    data_report: tuple[str, str] | None = None
    audit_result: tuple[str, str] | None = None

    def unsafe(self) -> list[str]:
        """The ``unsafe_`` settings this stage runs with (none by default)."""
        return []

    def load_problems(self, base_dir: Path) -> list[ConfigProblem]:
        """Problems decidable when the pipeline file is loaded (none by default); relative
        paths resolve against ``base_dir``, the pipeline file's folder. Cheap, reads no data."""
        return []

    def fingerprint(self) -> Mapping[str, Any]:
        """The configuration that changes the result."""
        raise NotImplementedError

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Do the work: plain values in, plain values out (one per declared output)."""
        raise NotImplementedError


def encode(kind: Kind, value: Any) -> bytes:
    """Serialise a stage output for the store."""
    if kind == "table":
        buf = io.BytesIO()
        value.to_parquet(buf, index=False, engine="pyarrow", compression="zstd")
        return buf.getvalue()
    if kind == "json":
        return canonical_json(value, default=_json_default)
    if kind == "text":
        return str(value).encode("utf-8")
    if kind == "model":
        from bastion.spec.serialization import dump_model

        return dump_model(value)
    raise ValueError(f"unknown artifact kind {kind!r}")


def decode(kind: Kind, data: bytes) -> Any:
    """Load a stage output from verified store bytes."""
    if kind == "table":
        import pandas as pd

        return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    if kind == "json":
        try:
            return json.loads(data)
        except ValueError:
            raise IntegrityError("stored JSON artifact does not parse") from None
    if kind == "text":
        return data.decode("utf-8")
    if kind == "model":
        from bastion.spec.serialization import load_model

        return load_model(data)
    raise ValueError(f"unknown artifact kind {kind!r}")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
