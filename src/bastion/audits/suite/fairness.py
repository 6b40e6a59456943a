"""The ``fairness`` audit: per-group and intersectional rates of the model's decisions on
the held-out rows, with bootstrap intervals, and (optionally) a mitigated copy beside it.

:meth:`FairnessAudit.measure` predicts ``data.model`` on ``data.test`` and runs
:func:`bastion.audits.fairness.fairness_audit` over the configured attributes (default:
``data.sensitive``), binned and sized as ``evaluate.fairness`` says (``data.fairness``).
The gated values are the worst over the attributes and their intersection: the largest
``demographic_parity_difference`` and ``equalized_odds_difference``, the smallest
``disparate_impact_ratio`` (``None`` when no attribute has two groups large enough to
compare); each value's interval is the bootstrap interval of the attribute that gave it.

With ``mitigation``, fairlearn's ThresholdOptimizer or ExponentiatedGradient is fitted on
the training rows around a clone of the estimator, and both models are measured on the
held-out rows: ``details["mitigation"]`` holds before and after. **The gated values are
always those of the model that ships — the unmitigated one**; the mitigated copy is
reported, never substituted. fairlearn is the optional ``fairness`` extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from bastion.audits import fairness as lib
from bastion.audits.base import Audit, AuditData, AuditResult
from bastion.errors import ConfigError
from bastion.spec.audits import FairnessAuditConfig

__all__ = ["FairnessAudit"]

_WORST = {
    "demographic_parity_difference": max,
    "equalized_odds_difference": max,
    "disparate_impact_ratio": min,
}
_METHOD = {"threshold_optimizer": "threshold", "exponentiated_gradient": "exponentiated_gradient"}
_EXTRA = "pip install 'bastion-ml[fairness]'"


class FairnessAudit(Audit):
    """Group fairness of the shipped model's decisions on the held-out rows (see the
    module docstring); the gated numbers are never those of the mitigated copy."""

    name: ClassVar[str] = "fairness"
    config_type: ClassVar[type[FairnessAuditConfig]] = FairnessAuditConfig
    config: FairnessAuditConfig

    def load_problems(
        self, columns: Sequence[str], sensitive: Sequence[str]
    ) -> list[tuple[tuple[str, ...], str]]:
        """Attributes must be schema columns; the mitigated attribute one of the audited."""
        found: list[tuple[tuple[str, ...], str]] = []
        attrs = self.config.attributes if self.config.attributes is not None else list(sensitive)
        for i, attr in enumerate(self.config.attributes or []):
            if attr not in columns:
                found.append((("attributes", str(i)), f"column {attr!r} is not in data.schema"))
        if self.config.attributes is None and not sensitive:
            found.append((("attributes",), "no attributes given and data.sensitive is empty"))
        mit = self.config.mitigation
        if mit is not None and mit.attribute is not None and mit.attribute not in attrs:
            found.append(
                (
                    ("mitigation", "attribute"),
                    f"{mit.attribute!r} is not an audited attribute; expected one of {attrs}",
                )
            )
        return found

    def measure(self, data: AuditData) -> AuditResult:
        """Measure the shipped model; mitigate a copy if configured (see the module doc)."""
        cfg = self.config
        attrs = list(cfg.attributes if cfg.attributes is not None else data.sensitive)
        if not attrs:
            raise ConfigError(
                "audits.fairness.attributes: none given and data.sensitive is empty;"
                " expected at least one sensitive column"
            )
        missing = [a for a in attrs if a not in data.test.columns]
        if missing:
            raise ConfigError(
                f"audits.fairness.attributes: {missing} are not columns of the test rows"
            )
        if cfg.mitigation is not None and not _has_fairlearn():
            raise ConfigError(
                f"audits.fairness.mitigation needs fairlearn: install the 'fairness' extra"
                f" ({_EXTRA})"
            )
        steps = 2 if cfg.mitigation is None else 3
        data.progress(0, steps, "predicting the held-out rows")
        X, y = data.xy(data.test)
        y_pred = _decisions(data.model.predict(X))
        data.progress(1, steps, f"group rates over {', '.join(attrs)}")
        found = lib.fairness_audit(
            data.test,
            attrs,
            y,
            y_pred,
            n_boot=cfg.resamples,
            confidence=cfg.confidence,
            seed=data.seed,
            **_grouping(data, attrs),
        )
        if not cfg.intersectional:
            found["intersectional"] = None
        values, intervals = _worst(found)
        warnings = [w for part in _parts(found) for w in part[1].get("warnings", [])]
        mitigation = None
        if cfg.mitigation is not None:
            data.progress(2, steps, f"mitigating ({cfg.mitigation.method})")
            mitigation = _mitigate(self.config, data, attrs, found)
        data.progress(steps, steps, "done")
        return AuditResult(
            audit=self.name,
            values=values,
            intervals=intervals,
            details={**found, "mitigation": mitigation},
            warnings=warnings,
        )


def _has_fairlearn() -> bool:
    try:
        importlib.import_module("fairlearn.postprocessing")
    except ImportError:
        return False
    return True


def _decisions(pred: Any) -> np.ndarray:
    return np.asarray(pred).astype("int64")


def _grouping(data: AuditData, attrs: list[str]) -> dict[str, Any]:
    """Binning and group sizes from ``evaluate.fairness``; numeric as the schema says."""
    conf = data.fairness
    out: dict[str, Any] = {}
    if all(a in data.schema for a in attrs):
        out["numeric"] = [a for a in attrs if data.schema[a].type in ("int", "float")]
    if conf is not None:
        out |= {
            "bins": dict(conf.bins),
            "min_group_size": conf.min_group_size,
            "max_groups": conf.max_groups,
        }
    return out


def _parts(found: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    parts = list(found["attributes"].items())
    if found.get("intersectional") is not None:
        parts.append((" & ".join(found["intersectional"]["attributes"]), found["intersectional"]))
    return parts


def _worst(found: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, list[float]]]:
    """The worst value over the attributes (and the intersection), and its interval."""
    values: dict[str, float | None] = {}
    intervals: dict[str, list[float]] = {}
    for metric, pick in _WORST.items():
        present = [(p[metric], p) for _, p in _parts(found) if p.get(metric) is not None]
        if not present:
            values[metric] = None
            continue
        value, part = pick(present, key=lambda vp: vp[0])
        values[metric] = value
        interval = (part.get("intervals") or {}).get(metric)
        if interval is not None:
            intervals[metric] = interval
    return values, intervals


def _mitigate(
    cfg: FairnessAuditConfig, data: AuditData, attrs: list[str], found: dict[str, Any]
) -> dict[str, Any]:
    """Before and after on the held-out rows, for a mitigated clone fitted on the training
    rows (the transformer as fitted; the estimator cloned and refitted)."""
    from bastion.audits.mitigation import mitigate

    mit = cfg.mitigation
    if mit is None:  # for the type checker: called only with a mitigation
        raise ConfigError("audits.fairness.mitigation: not configured")
    attr = mit.attribute or attrs[0]
    binning = found["attributes"][attr].get("binning")
    tf = data.transformer
    X_train, y_train = data.xy(data.train)
    X_test, y_test = data.xy(data.test)
    min_size = data.fairness.min_group_size if data.fairness is not None else lib.MIN_GROUP_SIZE
    out = mitigate(
        data.estimator,
        np.asarray(tf.transform(X_train), dtype=float),
        y_train,
        _groups(data.train[attr], binning),
        method=_METHOD[mit.method],
        constraint=mit.constraint,
        X_test=np.asarray(tf.transform(X_test), dtype=float),
        y_test=y_test,
        sensitive_test=_groups(data.test[attr], binning),
        seed=data.seed,
        min_group_size=min_size,
    )
    return {
        "method": mit.method,
        "constraint": mit.constraint,
        "attribute": attr,
        "before": _side(out["before"]),
        "after": _side(out["after"]),
        "note": "the gated values are the shipped (unmitigated) model's",
    }


def _groups(column: pd.Series, binning: dict[str, Any] | None) -> pd.Series:
    """The attribute as group names (binned with the audited edges; missing named)."""
    if binning is not None:
        names, _, _ = lib.bin_numeric(column, binning["edges"])
        return pd.Series(names, index=column.index, name=column.name)
    text = column.astype(object).where(column.notna(), "(missing)").astype(str)
    return pd.Series(text, index=column.index, name=column.name)


def _side(side: dict[str, Any]) -> dict[str, Any]:
    fair = side["fairness"]
    return {
        "accuracy": side["accuracy"],
        "demographic_parity_difference": fair["demographic_parity_difference"],
        "equalized_odds_difference": fair["equalized_odds_difference"],
        "disparate_impact_ratio": fair["disparate_impact_ratio"],
        "groups": fair["groups"],
    }
