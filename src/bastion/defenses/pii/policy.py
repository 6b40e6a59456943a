"""PII policy: apply the rule the pipeline declares for each personal-data column.

:func:`apply_pii_policies` applies the pipeline's ``data.pii`` rules
(:class:`~bastion.spec.config.PiiColumn`): ``drop``; ``pseudonymize`` (a keyed
HMAC-SHA256 token per value from a :class:`Pseudonymizer`, normally the keyring's pseudonym
key through :class:`KeyringPseudonymizer`: equal values give equal tokens across tables and
runs, so joins still work, until the key is rotated); ``generalize`` (number bins, text
truncation, dates to year or month); ``keep`` (with a reason). :func:`undeclared` and
:func:`pii_error` turn the hits no rule covers into the DataError that fails validation.
Checks return hits; the pipeline decides.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from bastion.defenses.pii._shapes import ISO_DATE
from bastion.defenses.pii.masking import mask
from bastion.errors import ConfigError, DataError

if TYPE_CHECKING:
    from bastion.defenses.pii.scan import PiiHit
    from bastion.spec.config import PiiColumn

__all__ = [
    "KeyringPseudonymizer",
    "Pseudonymizer",
    "apply_pii_policies",
    "pii_error",
    "undeclared",
]


class Pseudonymizer(Protocol):
    """What pseudonymizing a column needs: tokens for values, and which key made them."""

    @property
    def key_id(self) -> str:
        """Id of the key behind the tokens (goes into the report and the audit log)."""
        ...

    def pseudonymize(self, domain: str, values: Sequence[str]) -> list[str]:
        """One token per value; equal values in one domain give equal tokens."""
        ...


class _PseudonymKeys(Protocol):
    def active_pseudonym_key(self) -> str: ...

    def pseudonymize(self, key_id: str, domain: str, values: Sequence[str]) -> list[str]: ...


class KeyringPseudonymizer:
    """A :class:`Pseudonymizer` over a keyring's pseudonym key (``ws.keyring``).

    The key is chosen once, when this is made: a rotation during a run makes the rest of
    the run fail rather than mix tokens of two keys. The material stays in the keyring.
    """

    def __init__(self, keyring: _PseudonymKeys) -> None:
        self._keyring = keyring
        self.key_id = keyring.active_pseudonym_key()

    def pseudonymize(self, domain: str, values: Sequence[str]) -> list[str]:
        return self._keyring.pseudonymize(self.key_id, domain, values)


def apply_pii_policies(
    df: pd.DataFrame, rules: Mapping[str, PiiColumn], pseudonymizer: Pseudonymizer | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A new frame with each rule applied to its column, and a JSON-able report per column.

    Nulls stay null under every policy. ``pseudonymize`` turns each value into text first
    (floats that are whole numbers without the ``.0``, so an id column with gaps still
    joins) and needs ``pseudonymizer``; values are used exactly as written (normalise case
    or spaces first if they should not count).
    """
    missing = [c for c in rules if c not in df.columns]
    if missing:
        known = ", ".join(map(str, list(df.columns)[:20]))
        raise ConfigError(
            f"data.pii.{missing[0]}: no column {missing[0]!r} in the data (columns: {known})"
        )
    out = df.copy()
    report: dict[str, Any] = {}
    for column, rule in rules.items():
        series = out[column]
        present = series.notna()
        counts = {"values": int(present.sum()), "nulls": int((~present).sum())}
        if rule.policy == "drop":
            out = out.drop(columns=[column])
            report[column] = {"policy": "drop", **counts}
        elif rule.policy == "keep":
            report[column] = {"policy": "keep", "reason": rule.reason, **counts}
        elif rule.policy == "pseudonymize":
            if pseudonymizer is None:
                raise ConfigError(
                    f"data.pii.{column}: policy pseudonymize needs a pseudonym key"
                    " (run the pipeline in a workspace, whose keyring holds one)"
                )
            domain = rule.domain or column
            codes, distinct = pd.factorize(_as_text(series[present]))
            tokens = pseudonymizer.pseudonymize(domain, distinct.tolist())
            if len(tokens) != len(distinct):
                raise ConfigError(
                    f"data.pii.{column}: the pseudonymizer gave {len(tokens)} tokens"
                    f" for {len(distinct)} values"
                )
            filled = np.asarray(tokens, dtype=object)[codes]
            out[column] = _fill(series, present, filled)
            report[column] = {
                "policy": "pseudonymize",
                "domain": domain,
                "key_id": pseudonymizer.key_id,
                "distinct": len(distinct),
                **counts,
            }
        else:
            out[column], detail = _generalize(column, series, present, rule)
            report[column] = {"policy": "generalize", **detail, **counts}
    return out, report


def _fill(series: pd.Series, present: pd.Series, values: Any) -> pd.Series:
    """Text column shaped like ``series``: ``values`` where present, null elsewhere."""
    full = np.full(len(series), None, dtype=object)
    full[present.to_numpy(dtype=bool)] = values
    return pd.Series(full, index=series.index, dtype="str")


def _as_text(values: pd.Series) -> pd.Series:
    """Values as text: whole-number floats without ``.0`` (ids with gaps become floats)."""
    if pd.api.types.is_float_dtype(values.dtype):
        finite = np.isfinite(values.to_numpy(dtype="float64"))
        if finite.all() and (values % 1 == 0).all():
            return values.astype("int64").astype("str")
    return values.astype("str")


def _generalize(
    column: str, series: pd.Series, present: pd.Series, rule: PiiColumn
) -> tuple[pd.Series, dict[str, Any]]:
    if rule.bins is not None:
        numbers = pd.to_numeric(series, errors="coerce")
        _refuse(column, series[present & numbers.isna()], "numbers for 'bins'")
        edges = np.asarray(rule.bins, dtype="float64")
        shown = [_edge(e) for e in rule.bins]
        labels = np.asarray(
            [f"<{shown[0]}"]
            + [f"[{a}, {b})" for a, b in itertools.pairwise(shown)]
            + [f">={shown[-1]}"],
            dtype=object,
        )
        where = np.searchsorted(edges, numbers[present].to_numpy(dtype="float64"), side="right")
        outside = int(((where == 0) | (where == len(edges))).sum())
        return _fill(series, present, labels[where]), {"bins": list(rule.bins), "outside": outside}
    if rule.truncate is not None:
        cut = _as_text(series[present]).str.slice(0, rule.truncate)
        return _fill(series, present, cut.to_numpy(dtype=object)), {"truncate": rule.truncate}
    year, month = _year_month(series[present])
    _refuse(column, series[present][year.isna()], "ISO 8601 dates (YYYY-MM-DD) for 'date'")
    coarse = year if rule.date == "year" else year + "-" + month
    return _fill(series, present, coarse.to_numpy(dtype=object)), {"date": rule.date}


def _edge(edge: float) -> str:
    return str(int(edge)) if float(edge).is_integer() else repr(float(edge))


def _year_month(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Year and two-digit month as written, from datetimes or ISO 8601 text (null if not).

    Text is read, not parsed into instants: a time zone never moves a date into another
    month, and ``04/05/1987`` is refused rather than guessed.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.dt.strftime("%Y"), values.dt.strftime("%m")
    parts = values.astype("str").str.strip().str.extract(f"^{ISO_DATE}$")
    month, day = parts[1].astype("float64"), parts[2].astype("float64")
    valid = month.between(1, 12) & day.between(1, 31)
    return parts[0].where(valid), parts[1].str.zfill(2).where(valid)


def _refuse(column: str, bad: pd.Series, expected: str) -> None:
    if len(bad):
        raise DataError(
            f"data.pii.{column}: policy generalize needs {expected}; {len(bad)} value(s) are"
            f" not (e.g. {mask(str(bad.iloc[0]))})",
            [column],
        )


# -- verdict --------------------------------------------------------------------------------


def undeclared(hits: Sequence[PiiHit], declared: Collection[str]) -> list[PiiHit]:
    """The hits on columns that no ``data.pii`` rule names."""
    names = set(declared)
    return [hit for hit in hits if hit.column not in names]


def pii_error(hits: Sequence[PiiHit]) -> DataError:
    """The error that fails validation: each column, pattern, share and masked examples."""
    if not hits:
        raise ValueError("pii_error needs at least one hit")
    columns = list(dict.fromkeys(hit.column for hit in hits))
    return DataError(
        f"undeclared personal data in {len(columns)} column(s): "
        + "; ".join(hit.describe() for hit in hits)
        + ". Declare each as data.pii.<column>: {policy: drop|pseudonymize|generalize|keep}"
        f" in the pipeline file (e.g. data.pii.{columns[0]}: {{policy: pseudonymize}};"
        " keep needs a reason)",
        [hit.describe() for hit in hits],
    )
