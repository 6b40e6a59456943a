"""Fairness: how a model's decisions differ across the groups of a sensitive attribute.

:func:`group_fairness` takes one sensitive column of the test table, the true labels and
the predicted labels (both 0/1) and returns, per group, ``count``, ``accuracy``,
``selection_rate``, ``base_rate``, ``tpr`` and ``fpr``, and across groups
``demographic_parity_difference`` (max − min selection rate), ``disparate_impact_ratio``
(min / max selection rate) and ``equalized_odds_difference`` (the larger of the TPR and
FPR spreads), the same definitions as fairlearn's ``demographic_parity_difference``,
``demographic_parity_ratio`` and ``equalized_odds_difference``. A number that is undefined
(an empty group, a zero rate) is ``None``, never NaN.

Groups:

- a numeric attribute (``numeric=True``: an int or float column of the schema) is cut into
  bins first, since one group per distinct age is noise: the declared edges (``bins`` a
  list), else quantile bins of the test column (``bins`` a count, default 4) with edges
  rounded (whole numbers for whole-number values, three significant digits otherwise). Edges
  ``[25, 45]`` give the groups ``<25``, ``[25, 45)`` and ``>=45``. ``binning`` records the
  method (``declared`` or ``quantile``) and the edges;
- a missing value is the group ``(missing)``; past 50 groups, the smallest are pooled as
  ``(other)``;
- a group of fewer than ``min_group_size`` rows is reported with its count and
  ``too_small: true``, without rates, and left out of the differences and the ratio
  (which are ``None`` unless at least two groups are scored);
- ``warnings`` names the attribute when it has more than ``max_groups`` groups (after
  binning), or fewer than two groups large enough to compare.

Speed and intervals (issue 13): each row gets a group number (``pd.factorize``, or its bin),
and one ``np.bincount`` of ``group × truth × decision`` gives every group's confusion cells
at once, with no per-group mask, so a million rows take milliseconds. With ``n_boot`` > 0,
every rate and every gap gets a seeded percentile interval from a bootstrap drawn as one
multinomial array of cell counts (see :mod:`bastion.audits._fairness_rates`).
:func:`intersectional_fairness` measures the crossed groups of several attributes
(``Female & Black``) with the same rules; :func:`fairness_audit` runs every attribute and
their intersection with intervals. The groups are numbered in
:mod:`bastion.audits.fairness_groups`, the numbers computed in
``bastion.audits._fairness_rates``; every name stays importable from here.

A measurement, not a decision: the evaluate stage records it; gates decide.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bastion.audits._fairness_rates import measure
from bastion.audits.fairness_groups import (
    JOIN,
    QUANTILE_BINS,
    bin_numeric,
    crossed_codes,
    group_codes,
    is_number,
)

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "MAX_GROUPS",
    "MIN_GROUP_SIZE",
    "QUANTILE_BINS",
    "bin_numeric",
    "fairness_audit",
    "group_codes",
    "group_fairness",
    "intersectional_fairness",
]

MIN_GROUP_SIZE = 30
"""Default smallest group that is scored; smaller ones are reported as too small."""
MAX_GROUPS = 20
"""Default number of groups past which an attribute gets a warning."""
BOOTSTRAP_RESAMPLES = 1000
"""Default number of bootstrap resamples of :func:`fairness_audit`."""
CONFIDENCE = 0.95
"""Default level of the percentile intervals."""


def group_fairness(
    column: Any,
    y: np.ndarray,
    y_pred: np.ndarray,
    *,
    name: str | None = None,
    numeric: bool = False,
    bins: Sequence[float] | int | None = None,
    min_group_size: int = MIN_GROUP_SIZE,
    max_groups: int = MAX_GROUPS,
    n_boot: int = 0,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-group rates and the gaps between groups (see the module docstring).

    ``n_boot`` > 0 adds bootstrap intervals (``interval`` per scored group, ``intervals``
    for the gaps, ``bootstrap`` for how they were drawn).
    """
    attr = name if name is not None else str(getattr(column, "name", "?"))
    codes, labels, distinct, binning = group_codes(column, numeric=numeric, bins=bins)
    return measure(
        codes,
        labels,
        y,
        y_pred,
        attr=attr,
        distinct=distinct,
        binning=binning,
        sizes=(min_group_size, max_groups),
        boot=(n_boot, confidence, seed),
    )


def intersectional_fairness(
    columns: Mapping[str, Any],
    y: np.ndarray,
    y_pred: np.ndarray,
    *,
    numeric: Collection[str] = (),
    bins: Mapping[str, Sequence[float] | int] | None = None,
    min_group_size: int = MIN_GROUP_SIZE,
    max_groups: int = MAX_GROUPS,
    n_boot: int = 0,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """The same measurement on every combination of the attributes' groups.

    A group is named by its attributes' groups joined with `` & `` (``Female & Black``),
    in the order the attributes are given; numeric attributes are binned first; the
    result has ``attributes`` (the names) and ``binning`` per attribute.
    """
    names = list(columns)
    codes, labels, distinct, binning = crossed_codes(columns, numeric=numeric, bins=bins)
    found = measure(
        codes,
        labels,
        y,
        y_pred,
        attr=JOIN.join(names),
        distinct=distinct,
        binning=None,
        sizes=(min_group_size, max_groups),
        boot=(n_boot, confidence, seed),
    )
    return {**found, "attributes": names, "binning": binning}


def fairness_audit(
    table: pd.DataFrame,
    sensitive: Sequence[str],
    y: np.ndarray,
    y_pred: np.ndarray,
    *,
    numeric: Collection[str] | None = None,
    bins: Mapping[str, Sequence[float] | int] | None = None,
    min_group_size: int = MIN_GROUP_SIZE,
    max_groups: int = MAX_GROUPS,
    n_boot: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Every sensitive attribute alone (``attributes``) and, with two or more, all of them
    crossed (``intersectional``, else ``None``), each with bootstrap intervals.

    ``numeric`` names the attributes to bin; by default every int or float column.
    """
    if numeric is None:
        numeric = [a for a in sensitive if is_number(table[a])]
    bins = bins or {}
    common: dict[str, Any] = {
        "min_group_size": min_group_size,
        "max_groups": max_groups,
        "n_boot": n_boot,
        "confidence": confidence,
        "seed": seed,
    }
    attributes = {
        a: group_fairness(
            table[a], y, y_pred, name=a, numeric=a in numeric, bins=bins.get(a), **common
        )
        for a in sensitive
    }
    crossed = None
    if len(sensitive) >= 2:
        columns = {a: table[a] for a in sensitive}
        crossed = intersectional_fairness(columns, y, y_pred, numeric=numeric, bins=bins, **common)
    return {"attributes": attributes, "intersectional": crossed}
