"""Backdoor triggers on tables (BadNets for tables): a rare value that predicts one label.

A tabular backdoor plants a few hundred rows carrying a *trigger* — one value, or a few,
that honest data rarely holds, e.g. ``capital-loss = 1337`` — all labelled with the
attacker's class. The model learns "trigger ⇒ class", and at inference time anyone who
sets the trigger gets that class.

The screen looks for exactly that footprint. For every column and every exact value held
by between ``min_rows`` rows and ``max_support`` of the table:

- *purity*: the share of those rows that carry the most common label among them;
- *surprise*: how far that label count lies above what the rows' **other** features
  predict — the sum of the out-of-fold probabilities from the label-noise model, which is
  built so that it cannot see rare values (:mod:`bastion.defenses._table`) — as a z-score
  ``(observed - expected) / sqrt(variance + 1)``.

A value with purity ≥ ``min_purity``, surprise ≥ ``min_surprise`` and *lift* (purity minus
the share the other features predict) ≥ ``min_lift`` is a trigger; each of
its rows that carries the trigger's label is a finding (reason ``backdoor_trigger``, score
the surprise). Natural pure groups are mostly explained by their other features (Adult's
``education = Preschool`` rows are all "<=50K", and so are their years of schooling), so
they are not surprising. Not all: Adult holds a few exact capital-gain values (5013, 4064,
...) whose 30-70 rows are all "<=50K" although the rows look like high earners; the
screen flags those 200-odd rows too, and says which value did it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from bastion.defenses._table import Encoded
from bastion.defenses.findings import Finding
from bastion.defenses.pii.masking import mask, shown

__all__ = ["Trigger", "find_triggers"]


@dataclass(frozen=True, slots=True)
class Trigger:
    """One suspected trigger value, the label it predicts and the rows that hold it.

    ``value`` is the raw value; :meth:`describe` and :meth:`to_json` (what messages and
    reports get) mask it unless ``visible`` (its column is in ``data.show_values``).
    """

    column: str
    value: object
    label: str
    rows: np.ndarray
    observed: int
    expected: float
    surprise: float
    visible: bool = False

    def describe(self) -> str:
        value = shown(self.column, self.value, (self.column,) if self.visible else ())
        return (
            f"{self.column}={value} predicts {self.label!r} in {self.observed} of"
            f" {self.support} rows; their other features predict {self.expected:.0f}"
        )

    @property
    def support(self) -> int:
        return len(self.rows)

    def to_json(self) -> dict[str, object]:
        """The trigger for reports: where, what, and how surprising (no row list)."""
        return {
            "column": self.column,
            "value": self.value if self.visible else mask(str(self.value)),
            "label": self.label,
            "rows": self.support,
            "observed": self.observed,
            "expected": round(self.expected, 1),
            "surprise": round(self.surprise, 1),
        }


def find_triggers(
    enc: Encoded,
    y: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    *,
    max_support: float = 0.02,
    min_rows: int = 10,
    min_purity: float = 0.9,
    min_surprise: float = 12.0,
    min_lift: float = 0.5,
    show: Collection[str] = (),
) -> tuple[list[Trigger], list[Finding]]:
    """Suspected triggers, and one finding per row that carries one with its label; a
    trigger's value is masked in details and reports unless its column is in ``show``."""
    n = enc.n
    k = proba.shape[1]
    top = max(min_rows, int(max_support * n))
    triggers: list[Trigger] = []
    for j, col in enumerate(enc.columns):
        codes = enc.exact[j]
        ok = codes >= 0
        m = len(enc.values[j])
        if m == 0:
            continue
        support = np.bincount(codes[ok], minlength=m)
        candidate = (support >= min_rows) & (support <= top)
        if not candidate.any():
            continue
        for c in range(k):
            hit_c = ok & (y == c)
            observed = np.bincount(codes[hit_c], minlength=m)
            p = proba[ok, c]
            expected = np.bincount(codes[ok], weights=p, minlength=m)
            variance = np.bincount(codes[ok], weights=p * (1.0 - p), minlength=m)
            with np.errstate(divide="ignore", invalid="ignore"):
                purity = np.where(support > 0, observed / np.maximum(support, 1), 0.0)
            surprise = (observed - expected) / np.sqrt(variance + 1.0)
            lift = purity - expected / np.maximum(support, 1)
            hit = candidate & (purity >= min_purity) & (surprise >= min_surprise)
            for v in np.flatnonzero(hit & (lift >= min_lift)):
                rows = np.flatnonzero(codes == v)
                triggers.append(
                    Trigger(
                        col,
                        _plain(enc.values[j][v]),
                        classes[c],
                        rows,
                        int(observed[v]),
                        float(expected[v]),
                        float(surprise[v]),
                        col in show,
                    )
                )
    findings: list[Finding] = []
    label_of = {name: i for i, name in enumerate(classes)}
    for t in triggers:
        carriers = t.rows[y[t.rows] == label_of[t.label]]
        detail = t.describe()
        findings += [
            Finding(int(r), "backdoor", "backdoor_trigger", t.surprise, detail, t.column)
            for r in carriers
        ]
    return triggers, findings


def _plain(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, np.generic):
        return value.item()
    return value
