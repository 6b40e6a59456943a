"""Shift: how a new version of a training source differs from the last accepted one.

A poisoner who cannot touch the model can still move the data it learns from: add rows
from another population, drop a group, flip labels. :func:`profile_table` summarises an
accepted version in a small JSON document; :func:`compare` checks a new version against
it and returns a :class:`ShiftReport` — findings plus the numbers behind them (one call,
one pass; the report needs the per-column numbers and the policy needs the findings).

**Profile.** Shares are of the non-null values; the null fraction is kept on its own.

- numeric (int, float, bool): ``null_fraction``; ``min``/``max``/``mean``/``std`` of the
  finite values; ``edges``, the deciles 10 %…90 % (deduplicated, below ``max``); and
  ``fractions`` over the right-closed buckets ``< min``, ``[min, e1]``, ``(e1, e2]`` …
  ``(ek, max]``, ``> max``. A point mass (``capital-gain == 0``) gets its own bin, and
  values outside the old range have a bucket. ±inf is a value, not a null: it lands in
  the outer buckets; statistics and the sample use finite values only. ``sample`` is a
  sorted sample of at most 2,000 finite values, drawn with a fixed seed.
- categorical (strings, categories, the rest): the share of each of the
  ``max_categories`` most frequent values (as strings) and of all ``other`` values.
  String columns with over 90 % distinct values (at least 20) look like ids: they are
  listed in ``skipped``, not profiled.
- ``label``: the positive class, its share, and the count of each label value (values
  are compared as strings).

**Comparison.** A new table is profiled with the *baseline's* bins, categories and
kinds (non-numbers in a numeric column become nulls). Per column in both versions:

- ``psi`` when the population stability index Σ (q − p)·ln(q / p) over the baseline's
  buckets (numeric) or listed categories plus ``other`` exceeds ``ShiftConfig.psi``.
  Shares are floored at ε = 1e-4, so an empty bin costs a finite amount (one empty
  before and holding 1 % now adds 0.046).
- a test: two-sample Kolmogorov–Smirnov of the stored sample against as many new values
  (numeric), χ² on the counts (categorical). On big tables any p-value vanishes for
  meaningless changes, so a test counts only when p < 1e-3 *and* the effect is large
  (KS statistic D > 0.1, Cramér's V > 0.1). Its numbers are always in ``columns`` and in
  the PSI finding's detail; it is its own finding (``ks``, ``chi2``) only where the PSI
  did not fire, so one moved distribution is one finding, not two.
- ``new_category``: a value with ≥ 1 % of the new values the baseline did not list.
- ``null_rate``: the null fraction moved by more than 0.05.
- ``column_missing`` / ``column_added`` (ids included); ``kind_changed`` between two
  stored profiles whose column changed kind.
- ``class_balance`` (column = the label): the positive share moved by more than
  ``ShiftConfig.class_balance``; the detail gives rows before and now (size alone is no
  finding).

Scores: PSI, D, V, the new share, the change of a share, 1.0 for a changed column.
Profiling is a few vectorised passes per column (1,000,000 rows × 20 columns: ≈ 0.6 s).
When ``current`` is a stored profile with other bins, its numeric shares are re-estimated
on the baseline's bins from its sample (adds about 0.005 of noise to PSI).

The profile is built and checked by :mod:`bastion.defenses.shift_profile`; the comparison
is here. :data:`FORMAT` is importable from both.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bastion.defenses.findings import Finding
from bastion.defenses.pii.masking import mask
from bastion.defenses.shift_profile import FORMAT, checked, profile, shares
from bastion.errors import ConfigError
from bastion.spec.config import ShiftConfig

__all__ = ["FORMAT", "ShiftReport", "compare", "profile_table"]

_DETECTOR = "shift"
_EPS = 1e-4
_P_MAX = 1e-3
_EFFECT = 0.1
_NEW_SHARE = 0.01
_NULL_DELTA = 0.05


@dataclass(frozen=True, slots=True)
class ShiftReport:
    """What :func:`compare` found: ``findings`` for the policy, ``columns`` for the report.

    ``columns`` maps each column compared to its numbers, where they apply: ``psi``,
    ``ks_statistic``/``ks_pvalue`` or ``chi2_pvalue``/``cramers_v``, ``null_before``/
    ``null_now``; the label's entry has ``positive_before``/``positive_now``.
    """

    findings: list[Finding]
    columns: dict[str, dict[str, float]]
    rows_before: int
    rows_now: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (finite floats rounded to 6 digits)."""
        return {
            "rows_before": self.rows_before,
            "rows_now": self.rows_now,
            "findings": [f.to_json() for f in self.findings],
            "columns": {
                name: {k: round(v, 6) for k, v in values.items() if math.isfinite(v)}
                for name, values in self.columns.items()
            },
        }


def profile_table(
    df: pd.DataFrame, *, label: str, positive: str, max_categories: int = 200
) -> dict[str, Any]:
    """The JSON-able profile of ``df`` (see the module docstring); ``label`` must be in it."""
    if isinstance(max_categories, bool) or not isinstance(max_categories, int):
        raise ConfigError(f"max_categories: expected an integer >= 1, got {max_categories!r}")
    if max_categories < 1:
        raise ConfigError(f"max_categories: expected an integer >= 1, got {max_categories}")
    return profile(df, label, positive, max_categories, None)


def compare(
    baseline: Mapping[str, Any],
    current: pd.DataFrame | Mapping[str, Any],
    cfg: ShiftConfig,
    *,
    label: str,
    positive: str,
    show: Collection[str] = (),
) -> ShiftReport:
    """Shift of ``current`` (a table, or its profile) against the ``baseline`` profile; a
    new category is named masked unless its column is in ``show`` (``data.show_values``)."""
    base = checked(baseline, "baseline", label, positive)
    now: Mapping[str, Any]
    if isinstance(current, pd.DataFrame):
        now = profile(current, label, positive, int(base["max_categories"]), base)
    else:
        now = checked(current, "current", label, positive)
    findings: list[Finding] = []
    columns: dict[str, dict[str, float]] = {}
    before_names = [*base["columns"], *base["skipped"]]
    now_names = [*now["columns"], *now["skipped"]]
    for name in before_names:
        if name not in now_names:
            findings.append(_col(name, "column_missing", "the baseline had this column"))
    for name in base["columns"]:
        if name not in now["columns"]:
            continue
        b, c = base["columns"][name], now["columns"][name]
        nums = {"null_before": b["null_fraction"], "null_now": c["null_fraction"]}
        columns[name] = nums
        if b["kind"] != c["kind"]:
            text = f"was {b['kind']}, is {c['kind']}"
            findings.append(_col(name, "kind_changed", text))
            continue
        if b["kind"] == "numeric":
            same_bins = isinstance(current, pd.DataFrame)  # profiled with the baseline's bins
            findings += _numeric_shift(name, b, c, cfg, nums, same_bins)
        else:
            findings += _categorical_shift(name, b, c, cfg, nums, name in show)
        delta = abs(c["null_fraction"] - b["null_fraction"])
        if delta > _NULL_DELTA:
            text = f"null fraction {b['null_fraction']:.3f} → {c['null_fraction']:.3f}"
            findings.append(Finding(None, _DETECTOR, "null_rate", delta, text, name))
    for name in now_names:
        if name not in before_names:
            findings.append(_col(name, "column_added", "the baseline had no such column"))
    findings += _balance(base, now, cfg, columns)
    return ShiftReport(findings, columns, int(base["rows"]), int(now["rows"]))


# -- comparison --------------------------------------------------------------------------


def _col(name: str, reason: str, detail: str) -> Finding:
    return Finding(None, _DETECTOR, reason, 1.0, detail, name)


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.maximum(p, _EPS), np.maximum(q, _EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def _numeric_shift(
    name: str,
    b: Mapping[str, Any],
    c: Mapping[str, Any],
    cfg: ShiftConfig,
    nums: dict[str, float],
    same_bins: bool,
) -> list[Finding]:
    if b["min"] is None or not c["count"]:
        return []
    p = np.asarray(b["fractions"], dtype=np.float64)
    same = same_bins or (b["edges"], b["min"], b["max"]) == (c["edges"], c["min"], c["max"])
    q = np.asarray(c["fractions"], dtype=np.float64) if same else _rebin(b, c)
    psi = nums["psi"] = _psi(p, q)
    test = ""
    if b["sample"] and c["sample"]:
        res = stats.ks_2samp(b["sample"], c["sample"], method="asymp")
        d, pvalue = float(res.statistic), float(res.pvalue)
        nums.update(ks_statistic=d, ks_pvalue=pvalue)
        test = f"; KS D={d:.3f}, p={pvalue:.2g}"
    known = b["mean"] is not None and c["mean"] is not None
    means = f"; mean {b['mean']:.4g} → {c['mean']:.4g}" if known else ""
    if psi > cfg.psi:
        text = f"PSI {psi:.3f} > {cfg.psi}{test}{means}"
        return [Finding(None, _DETECTOR, "psi", psi, text, name)]
    if test and nums["ks_pvalue"] < _P_MAX and nums["ks_statistic"] > _EFFECT:
        text = f"KS D={nums['ks_statistic']:.3f}, p={nums['ks_pvalue']:.2g}{means}"
        return [Finding(None, _DETECTOR, "ks", nums["ks_statistic"], text, name)]
    return []


def _rebin(b: Mapping[str, Any], c: Mapping[str, Any]) -> np.ndarray:
    """Shares of a self-binned profile ``c`` on ``b``'s buckets, estimated from its sample.

    ``c``'s own outer buckets hold only its ±inf values (its min and max are finite).
    """
    edges = np.asarray(b["edges"], dtype=np.float64)
    sample = np.asarray(c["sample"], dtype=np.float64)
    neg, pos = (c["fractions"][0], c["fractions"][-1]) if c["fractions"] else (0.0, 0.0)
    q = np.asarray(shares(sample, b["min"], b["max"], edges)) * (1.0 - neg - pos)
    q[0] += neg
    q[-1] += pos
    return q


def _categorical_shift(
    name: str,
    b: Mapping[str, Any],
    c: Mapping[str, Any],
    cfg: ShiftConfig,
    nums: dict[str, float],
    visible: bool = False,
) -> list[Finding]:
    if not b["count"] or not c["count"]:
        return []
    listed = list(b["frequencies"])
    p = np.array([*(b["frequencies"][k] for k in listed), b["other"]], dtype=np.float64)
    q = np.array([c["frequencies"].get(k, 0.0) for k in listed], dtype=np.float64)
    q = np.append(q, max(0.0, 1.0 - float(q.sum())))  # new values count as "other"
    psi = nums["psi"] = _psi(p, q)
    table = np.rint(np.vstack([p * b["count"], q * c["count"]]))
    table = table[:, table.sum(axis=0) > 0]
    test = ""
    if table.shape[1] >= 2 and (table.sum(axis=1) > 0).all():
        chi2, pvalue = stats.chi2_contingency(table, correction=False)[:2]
        v = math.sqrt(float(chi2) / float(table.sum()))
        nums.update(chi2_pvalue=float(pvalue), cramers_v=v)
        test = f"; chi² p={float(pvalue):.2g}, Cramér's V={v:.3f}"
    found: list[Finding] = []
    if psi > cfg.psi:
        text = f"PSI {psi:.3f} > {cfg.psi}{test}"
        found.append(Finding(None, _DETECTOR, "psi", psi, text, name))
    elif test and nums["chi2_pvalue"] < _P_MAX and nums["cramers_v"] > _EFFECT:
        found.append(Finding(None, _DETECTOR, "chi2", nums["cramers_v"], test[2:], name))
    for value, share in c["frequencies"].items():
        if share >= _NEW_SHARE and value not in b["frequencies"]:
            what = repr(value[:40]) if visible else repr(mask(value[:40]))
            text = f"{what} holds {share:.1%} of the values; the baseline did not list it"
            found.append(Finding(None, _DETECTOR, "new_category", share, text, name))
    return found


def _balance(
    base: Mapping[str, Any], now: Mapping[str, Any], cfg: ShiftConfig, columns: dict[str, Any]
) -> list[Finding]:
    b, c = base["label"], now["label"]
    nums = {"null_before": float(b["null_fraction"]), "null_now": float(c["null_fraction"])}
    columns[b["column"]] = nums
    if b["positive_share"] is None or c["positive_share"] is None:
        return []
    before, after = float(b["positive_share"]), float(c["positive_share"])
    nums.update(positive_before=before, positive_now=after)
    delta = abs(after - before)
    if delta <= cfg.class_balance:
        return []
    text = (
        f"share of {b['positive']!r} {before:.3f} → {after:.3f} (> ±{cfg.class_balance}); "
        f"rows {base['rows']} → {now['rows']}"
    )
    return [Finding(None, _DETECTOR, "class_balance", delta, text, b["column"])]
