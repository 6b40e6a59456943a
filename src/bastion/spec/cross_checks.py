"""Checks across fields and sections of a pipeline file, beyond what one field's type says.

Two kinds. The models' own cross-field checks (:func:`check_data`, :func:`check_features`,
:func:`check_split`, :func:`check_fairness_bins`) run as their model validators and raise
an error positioned at the node that is wrong (:func:`bastion.spec._checks.at`): a column
named but not declared, a label used as a feature, a test source that is not a source.
:func:`file_problems` lists what a whole FILE must also get right, which a config built in
code for one stage need not; the loader cites each problem at its node.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bastion.spec._checks import NAME as _NAME
from bastion.spec._checks import at as _at

if TYPE_CHECKING:
    from bastion.spec.config import DataConfig, PipelineConfig

__all__ = [
    "Problem",
    "check_data",
    "check_fairness_bins",
    "check_features",
    "check_split",
    "file_problems",
]

Problem = tuple[tuple[str, ...], str]
"""One problem of a file: the key path it is at, and what is wrong and what is expected."""


def check_data(data: DataConfig) -> None:
    """Every column ``data`` names is declared in its schema; source names, PII, shown
    values and custom checks agree with each other (a bad check expression included)."""
    for path, cols in (
        (("label", "column"), {"": data.label.column}),
        (("sensitive",), dict(enumerate(data.sensitive))),
        (("show_values",), dict(enumerate(data.show_values))),
        (("pii",), {c: c for c in data.pii}),
        (("screen", "duplicates", "ignore"), dict(enumerate(data.screen.duplicates.ignore))),
    ):
        for at, col in cols.items():
            if col not in data.schema_:
                where = (*path, at) if at != "" else path
                raise _at(*where, what=f"column {col!r} is not in data.schema")
    for name in data.sources:
        if not re.match(_NAME, name):
            raise _at("sources", name, what=f"source name {name!r}: expected {_NAME}")
    if data.label.column in data.pii:
        raise _at("pii", data.label.column, what=f"the label {data.label.column!r} cannot be PII")
    for i, col in enumerate(data.show_values):
        if col in data.pii:
            raise _at("show_values", i, what=f"PII column {col!r} is always masked")
    seen: set[str] = set()
    for i, check in enumerate(data.checks):
        if check.name in seen:
            raise _at("checks", i, "name", what=f"name {check.name!r} is used more than once")
        seen.add(check.name)
    if data.checks:  # compiled now, so a bad expression is reported with its line
        from bastion.errors import ConfigError
        from bastion.spec.expr import compile_check

        for i, check in enumerate(data.checks):
            try:
                compile_check(check, data.schema_)
            except ConfigError as exc:
                raise _at("checks", i, "expr", what=str(exc)) from None


def check_features(config: PipelineConfig) -> None:
    """Each feature column is declared, is not the label, and is sensitive or PII only
    where the file allows it."""
    data, label = config.data, config.data.label.column
    for group, cols in (
        ("numeric", config.features.numeric.columns),
        ("categorical", config.features.categorical.columns),
        ("drop", config.features.drop),
    ):
        where = ("features", group, "columns") if group != "drop" else ("features", "drop")
        for i, col in enumerate(cols):
            if col not in data.schema_:
                raise _at(*where, i, what=f"column {col!r} is not in data.schema")
            if col == label:
                raise _at(*where, i, what=f"the label {col!r} cannot be a feature")
            if group == "drop":
                continue
            if col in data.sensitive and not config.features.use_sensitive:
                raise _at(
                    *where,
                    i,
                    what=f"sensitive column {col!r} used as a feature; set"
                    " features.use_sensitive: true to allow it",
                )
            if col in data.pii and data.pii[col].policy != "generalize":
                raise _at(
                    *where,
                    i,
                    what=f"PII column {col!r} used as a feature; only a PII column with"
                    " policy generalize may be a feature",
                )


def check_fairness_bins(config: PipelineConfig) -> None:
    """``evaluate.fairness.bins`` names only numeric columns of ``data.sensitive``."""
    for col in config.evaluate.fairness.bins:
        where = ("evaluate", "fairness", "bins", col)
        if col not in config.data.sensitive:
            raise _at(*where, what=f"{col!r} is not listed in data.sensitive")
        kind = config.data.schema_[col].type
        if kind not in ("int", "float"):
            raise _at(*where, what=f"{col!r} is of type {kind}; only int and float bin")


def check_split(config: PipelineConfig) -> None:
    """``split.test_source``, if given, names one of the data sources."""
    test, sources = config.split.test_source, list(config.data.sources)
    if test is not None and test not in sources:
        raise _at(
            "split",
            "test_source",
            what=f"{test!r} is not a data source (sources: {', '.join(sources)})",
        )


def file_problems(config: PipelineConfig) -> list[Problem]:
    """What a pipeline FILE must also get right, beyond the models' own checks: each
    ``(key path, what is wrong; what is expected)``, cited by the loader at that node.

    Kept out of the models so a config built in code for one stage need not be runnable
    as a whole; every file the loader reads (and so every run) passes them: the label's
    ``positive`` is of the label column's type and among its categories, ``label.map``
    maps into those categories, and the split's sources fit its mode.
    """
    return _label_problems(config.data) + _split_problems(config)


def _label_problems(data: DataConfig) -> list[Problem]:
    label = data.label
    spec = data.schema_[label.column]
    want = {"int": (int,), "float": (int, float), "bool": (bool,)}.get(spec.type, (str,))
    given = label.positive
    at = ("data", "label", "positive")
    if (isinstance(given, bool) and bool not in want) or not isinstance(given, want):
        return [(at, _label_type_hint(spec.type, given))]
    if spec.categories is None:
        return []
    found: list[Problem] = []
    if given not in spec.categories:
        found.append((at, f"{given!r} is not one of the label's categories {spec.categories}"))
    for raw, value in label.map.items():
        if value not in spec.categories:
            found.append(
                (
                    ("data", "label", "map", raw),
                    f"maps to {value!r}, which is not one of the label's categories"
                    f" {spec.categories}",
                )
            )
    return found


def _split_problems(config: PipelineConfig) -> list[Problem]:
    test, sources = config.split.test_source, list(config.data.sources)
    if test is None:
        if len(sources) == 1:
            return []
        what = (
            f"{len(sources)} data sources and no split.test_source; expected one source to"
            " split, or split.test_source naming the test set"
        )
        return [(("data", "sources", sources[1]), what)]
    found: list[Problem] = []
    if len(sources) != 2:
        what = (
            f"expected exactly two data sources (one to train on, {test!r} to test on),"
            f" got {len(sources)}"
        )
        found.append((("split", "test_source"), what))
    for key in ("stratify", "test_size"):
        if key in config.split.model_fields_set:
            what = "has no effect with split.test_source (the test set is a whole source)"
            found.append((("split", key), what))
    return found


def _label_type_hint(kind: str, given: bool | int | float | str) -> str:
    """Why ``positive`` does not fit a ``kind`` label, and what to write instead."""
    shown = "true" if given is True else "false" if given is False else repr(given)
    if kind in ("str", "category"):
        text = str(given).lower() if isinstance(given, bool) else str(given)
        return f"the label column is {kind} but positive is {shown}; write positive: {text!r}"
    text = str(given).strip()
    fix = {"int": r"[+-]?\d+", "float": r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"}.get(kind)
    if kind == "bool" and text.lower() in ("true", "false"):
        return f"the label column is bool but positive is {shown}; write positive: {text.lower()}"
    if fix is not None and re.fullmatch(fix, text):
        return f"the label column is {kind} but positive is {shown}; write positive: {text}"
    return f"the label column is {kind} but positive is {shown}; expected a {kind} value"
