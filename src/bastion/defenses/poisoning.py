"""The poisoning screen: every detector over one table, findings out, policy applied.

:func:`screen_table` encodes the table once (:mod:`bastion.defenses._table`), fits one set
of cross-validated models (:mod:`bastion.defenses.label_noise`) and runs:

============  ===================================================  ======================
detector      finds                                                reasons
============  ===================================================  ======================
label_noise   labels that cross-validated models confidently       ``label_flip``
              contradict (confident learning)
outliers      rows far from their own class (per-class HBOS)       ``class_outlier``
duplicates    exact repeats and floods of near-identical rows      ``exact_duplicate``,
                                                                   ``duplicate_flood``
backdoor      rare values that predict one label by themselves     ``backdoor_trigger``
shift         change against the last accepted profile             ``psi``, ``chi2``, ...
============  ===================================================  ======================

Detectors only find; :class:`PoisoningReport` applies the policies of the pipeline file's
``data.screen`` (``flag``: report only; ``quarantine``: the row is set aside, stored
encrypted with its reasons; ``fail``: the run stops). Detectors in ``unsafe_skip`` do not
run, and the result says so. The screen is seeded, so the same table and config always give
the same findings.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bastion.defenses._table import encode_table
from bastion.defenses.backdoor import find_triggers
from bastion.defenses.duplicates import duplicates
from bastion.defenses.findings import Finding
from bastion.defenses.label_noise import label_issues, out_of_fold
from bastion.defenses.outliers import outliers
from bastion.errors import DataError
from bastion.spec.config import DETECTORS
from bastion.threads import limit_threads

if TYPE_CHECKING:
    from bastion.spec.config import ScreenConfig

__all__ = ["DETECTORS", "PoisoningReport", "screen_table"]

_EXAMPLES = 5

Progress = Callable[[str], None]


@dataclass
class PoisoningReport:
    """What the screen found, and what the policies make of it."""

    rows: int
    findings: list[Finding]  # row-level first (by row), then column/table-level
    policies: dict[str, str]  # detector -> flag | quarantine | fail
    ran: list[str]
    skipped: list[str]  # unsafe_skip, or not applicable (e.g. shift with no baseline)
    seconds: dict[str, float]
    triggers: list[dict[str, Any]] = field(default_factory=list)
    shift: dict[str, Any] | None = None
    unlabelled: int = 0  # rows with a null label, not screened
    pii: list[dict[str, Any]] | None = None  # PII scan hits, when the caller ran one

    def rows_for(self, policy: str) -> np.ndarray:
        """Sorted row numbers with at least one finding whose detector has ``policy``."""
        rows = {
            f.row
            for f in self.findings
            if f.row is not None and self.policies[f.detector] == policy
        }
        return np.array(sorted(r for r in rows if r is not None), dtype=np.int64)

    def failing(self) -> list[Finding]:
        return [f for f in self.findings if self.policies[f.detector] == "fail"]

    def reasons(self) -> dict[int, str]:
        """Per flagged row: every reason, ``detector:reason`` joined by ``; ``."""
        out: dict[int, list[str]] = {}
        for f in self.findings:
            if f.row is not None:
                out.setdefault(f.row, []).append(f"{f.detector}:{f.reason}")
        return {r: "; ".join(dict.fromkeys(v)) for r, v in out.items()}

    def counts(self) -> dict[str, dict[str, int]]:
        """Per detector: findings per reason."""
        out: dict[str, dict[str, int]] = {d: {} for d in self.ran}
        for (det, reason), k in Counter((f.detector, f.reason) for f in self.findings).items():
            out.setdefault(det, {})[reason] = k
        return out

    def to_json(self, *, examples: int = _EXAMPLES, all_findings: bool = False) -> dict[str, Any]:
        by_det: dict[str, list[Finding]] = {}
        for f in self.findings:
            by_det.setdefault(f.detector, []).append(f)
        doc: dict[str, Any] = {
            "rows": self.rows,
            "unlabelled": self.unlabelled,
            "ran": self.ran,
            "skipped": self.skipped,
            "policies": self.policies,
            "counts": self.counts(),
            "rows_flagged": len({f.row for f in self.findings if f.row is not None}),
            "rows_quarantined": len(self.rows_for("quarantine")),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "triggers": self.triggers,
            "shift": self.shift,
            "pii": self.pii,
            "examples": {
                d: [f.to_json() for f in sorted(fs, key=lambda f: -f.score)[:examples]]
                for d, fs in by_det.items()
            },
        }
        if all_findings:
            doc["findings"] = [f.to_json() for f in self.findings]
        return doc


def screen_table(
    df: pd.DataFrame,
    *,
    label: str,
    cfg: ScreenConfig,
    positive: str | None = None,
    seed: int = 0,
    baseline: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    shift: bool = True,
    show_values: Collection[str] = (),
    threads: int | str | None = None,
) -> PoisoningReport:
    """Run every detector not in ``cfg.unsafe_skip`` over ``df``; nothing is removed here.

    ``shift=False`` leaves shift out entirely (neither run nor skipped): the pipeline runs
    it as its own stage. Findings, triggers and details name values masked unless their
    column is in ``show_values`` (the pipeline's ``data.show_values``). ``threads`` caps
    the cross-validation's thread pools (:mod:`bastion.threads`; ``None`` is
    ``BASTION_THREADS`` or auto).
    """
    step = progress or (lambda _s: None)
    if label not in df.columns:
        known = ", ".join(map(str, df.columns[:20]))
        raise DataError(f"label column {label!r} is not in the table (columns: {known})")
    skip: set[str] = set(cfg.unsafe_skip)
    policies = {d: cfg.policy_of(d) for d in DETECTORS}
    seconds: dict[str, float] = {}
    ran: list[str] = []
    skipped = [d for d in DETECTORS if d in skip and (shift or d != "shift")]
    findings: list[Finding] = []

    t = time.perf_counter()
    labels = df[label]
    known_label = labels.notna().to_numpy()
    rows = np.flatnonzero(known_label)  # screened rows -> row numbers in df
    text = labels[known_label].astype("str")
    codes, uniques = pd.factorize(text, sort=True)
    classes = [str(u) for u in uniques]
    y = codes.astype(np.int64)
    work = df.iloc[rows] if len(rows) != len(df) else df
    rare = max(cfg.backdoor.min_rows, int(cfg.backdoor.max_support * len(y)))
    if {"label_noise", "backdoor", "outliers", "duplicates"} - skip:
        enc = encode_table(work, exclude=(label,), rare=rare)
        seconds["encode"] = time.perf_counter() - t
    else:  # every table detector skipped: nothing reads the encoding
        enc = encode_table(work[[]], rare=rare)

    def timed(name: str, fn: Callable[[], list[Finding]]) -> None:
        step(name)
        t0 = time.perf_counter()
        got = fn()
        seconds[name] = time.perf_counter() - t0
        ran.append(name)
        # detectors number the screened (labelled) rows; findings number the table's rows
        findings.extend(f if f.row is None else replace(f, row=int(rows[f.row])) for f in got)

    triggers: list[dict[str, Any]] = []
    need_model: set[str] = {"label_noise", "backdoor"} - skip
    if need_model and len(classes) >= 2 and len(y) >= 20:
        step("cross-validation")
        t0 = time.perf_counter()
        ln = cfg.label_noise
        with limit_threads(threads):
            proba = out_of_fold(enc, y, folds=ln.folds, max_train_rows=ln.max_train_rows, seed=seed)
        seconds["cross_validation"] = time.perf_counter() - t0
        if "label_noise" not in skip:
            timed(
                "label_noise",
                lambda: label_issues(proba, y, classes, min_confidence=ln.min_confidence),
            )
        if "backdoor" not in skip:
            bd = cfg.backdoor

            def backdoor() -> list[Finding]:
                found, rows_found = find_triggers(
                    enc,
                    y,
                    proba,
                    classes,
                    max_support=bd.max_support,
                    min_rows=bd.min_rows,
                    min_purity=bd.min_purity,
                    min_surprise=bd.min_surprise,
                    min_lift=bd.min_lift,
                    show=show_values,
                )
                triggers.extend(tr.to_json() for tr in found)
                return rows_found

            timed("backdoor", backdoor)
    else:
        skipped += sorted(d for d in need_model if d not in skipped)
    if "outliers" not in skip:
        threshold = cfg.outliers.threshold
        timed("outliers", lambda: outliers(enc, y, classes, threshold=threshold, show=show_values))
    if "duplicates" not in skip:
        dup = cfg.duplicates
        timed(
            "duplicates",
            lambda: duplicates(
                enc, y, flood_size=dup.flood_size, near=dup.near, ignore=tuple(dup.ignore)
            ),
        )
    shift_doc: dict[str, Any] | None = None
    if shift and "shift" not in skip:
        if baseline is None or positive is None:
            skipped.append("shift")
        else:
            from bastion.defenses.shift import compare

            step("shift")
            t0 = time.perf_counter()
            report = compare(
                baseline, df, cfg.shift, label=label, positive=positive, show=show_values
            )
            seconds["shift"] = time.perf_counter() - t0
            ran.append("shift")
            findings.extend(report.findings)
            shift_doc = report.to_json()
    findings.sort(key=lambda f: (f.row is None, f.row if f.row is not None else 0, f.detector))
    return PoisoningReport(
        rows=len(df),
        findings=findings,
        policies=policies,
        ran=ran,
        skipped=sorted(set(skipped), key=DETECTORS.index),
        seconds=seconds,
        triggers=triggers,
        shift=shift_doc,
        unlabelled=int(len(df) - len(rows)),
    )
