# Over 400 lines, because the whole pipeline file's schema stays in one place.
"""The pipeline file: pydantic models, strict (unknown keys are errors), one per section.

A pipeline file is YAML::

    name: adult-income
    seed: 42
    threads: auto            # or a count; BASTION_THREADS overrides (bastion.threads)
    data: {sources: {...}, schema: {...}, label: {...}, sensitive: [...], show_values: [...],
          pii: {...}, pii_scan: {...}, checks: [...], validation: {...}, screen: {...}}
    split: {...}
    features: {...}
    model: {...}
    evaluate: {...}
    release: {...}

:func:`bastion.spec.loader.load_pipeline` reads the file and turns every validation
error into a :class:`~bastion.errors.ConfigError` that names the file, the line, the key,
what was expected and what was given. ``bastion schema`` prints :func:`json_schema`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bastion.spec._checks import at as _at
from bastion.spec._checks import check_gate_names
from bastion.spec.audits import AuditsConfig

__all__ = [
    "DETECTORS",
    "METRICS",
    "BackdoorConfig",
    "CategoricalFeatures",
    "ColumnSpec",
    "CsvOptions",
    "CustomCheck",
    "DataConfig",
    "DuplicatesConfig",
    "EvaluateConfig",
    "FairnessConfig",
    "FeaturesConfig",
    "LabelConfig",
    "LabelNoiseConfig",
    "ModelConfig",
    "NumericFeatures",
    "OutlierConfig",
    "PiiColumn",
    "PiiScanConfig",
    "PipelineConfig",
    "ReleaseConfig",
    "ScreenConfig",
    "ShiftConfig",
    "SourceConfig",
    "SplitConfig",
    "ValidationConfig",
    "file_problems",
    "json_schema",
]

_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Metric = Literal[
    "accuracy", "balanced_accuracy", "roc_auc", "f1", "precision", "recall", "log_loss", "brier"
]
METRICS: tuple[str, ...] = get_args(Metric)
"""Every metric the evaluate stage computes: what ``evaluate.metrics`` may list and what a
``min_<metric>``/``max_<metric>`` gate may name."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CsvOptions(_Strict):
    """How to parse a CSV source."""

    delimiter: str = Field(",", min_length=1, max_length=1)
    skip_initial_space: bool = Field(False, description="Strip spaces after the delimiter.")
    na_values: list[str] = Field(default_factory=list, description="Extra strings read as null.")
    encoding: str = "utf-8"


class SourceConfig(_Strict):
    """One input: a CSV or Parquet file, or a SQL query through a SQLAlchemy URL."""

    format: Literal["csv", "parquet", "sql"]
    path: str | None = Field(None, description="File path, relative to the pipeline file.")
    url: str | None = Field(
        None,
        description="SQLAlchemy URL (format sql). ${NAME} expands an environment variable"
        " listed in BASTION_ALLOW_ENV (never a BASTION_* one); the password and secret query"
        " parameters are shown as *** everywhere.",
    )
    query: str | None = Field(None, description="SELECT statement (format sql).")
    timeout_seconds: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="format sql: stop the query after this many seconds (default 300;"
        " SQLite: interrupted; PostgreSQL: statement_timeout).",
    )
    sha256: str | None = Field(
        None, description="Pin: SHA-256 of the file bytes, or of the query result (sql)."
    )
    unsafe_unpinned: bool = Field(
        False, description="Accept the source without a pin. Logged and audited."
    )
    csv: CsvOptions = Field(default_factory=lambda: CsvOptions())

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and not _SHA256.match(v):
            raise ValueError("expected 64 lowercase hex characters (a SHA-256)")
        return v

    @model_validator(mode="after")
    def _shape(self) -> SourceConfig:
        if self.format in ("csv", "parquet") and not self.path:
            raise ValueError(f"a {self.format} source needs 'path'")
        if self.format == "sql" and not (self.url and self.query):
            raise ValueError("a sql source needs 'url' and 'query'")
        if self.format != "sql" and self.timeout_seconds is not None:
            raise _at("timeout_seconds", what="only for format sql")
        if self.sha256 is None and not self.unsafe_unpinned:
            raise ValueError(
                "missing 'sha256' pin (or set 'unsafe_unpinned: true', which is audited)"
            )
        return self


class ColumnSpec(_Strict):
    """What one column must hold."""

    type: Literal["int", "float", "str", "category", "bool"]
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = Field(None, description="Allowed values (category).")
    unique: bool = False

    @model_validator(mode="after")
    def _shape(self) -> ColumnSpec:
        if self.categories is not None and self.type != "category":
            raise _at("categories", what="only for type category")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            key = "min" if self.min is not None else "max"
            raise _at(key, what="'min'/'max' are only for int and float columns")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _at("max", what=f"max ({self.max}) is less than min ({self.min})")
        return self


class LabelConfig(_Strict):
    """The target column; ``map`` rewrites raw values (e.g. Adult's ``>50K.`` → ``>50K``)."""

    column: str
    positive: bool | int | float | str = Field(
        description="The value that counts as the positive class, of the label column's type"
        ' (an int label: positive: 1; a category or str label: positive: ">50K").'
    )
    map: dict[str, str] = Field(default_factory=dict)

    @property
    def positive_text(self) -> str:
        """``positive`` as the label's values read as text (``str(value)``: ``1``, ``True``)."""
        return str(self.positive)


class ValidationConfig(_Strict):
    """What to do with rows that break the schema."""

    policy: Literal["fail", "quarantine"] = "fail"
    max_report: int = Field(50, ge=1, le=10_000, description="Violations listed in reports.")


_CHECK_NAME = r"^[a-z][a-z0-9_]{0,63}$"
Policy = Literal["flag", "quarantine", "fail"]
Detector = Literal["label_noise", "outliers", "duplicates", "backdoor", "shift"]
DETECTORS: tuple[str, ...] = get_args(Detector)  # the screen's detectors, in run order


class CustomCheck(_Strict):
    """A row rule over several columns, e.g. ``"`capital-gain` == 0 or `capital-loss` == 0"``.

    The expression language is small and safe (no calls, no attributes, nothing imported):
    column names (in backticks when they are not identifiers), numbers, strings, ``True``,
    ``False``, comparisons (chained too), ``and``/``or``/``not``, ``+ - * / % **``,
    ``in [...]`` and ``is_null(`col`)``/``not_null(`col`)``. A row passes when it is true.
    """

    name: Annotated[str, Field(pattern=_CHECK_NAME)]
    expr: str = Field(min_length=1, max_length=2000)
    message: str = Field("", description="What a failing row means, for the report.")


class PiiColumn(_Strict):
    """What to do with one column that holds personal data.

    ``drop`` removes it after validation; ``pseudonymize`` replaces each value with a keyed
    HMAC-SHA256 (key from the keyring, so equal values stay equal across tables and runs,
    and change when the pseudonym key is rotated); ``generalize`` bins numbers
    (``bins``), truncates text (``truncate``) or coarsens dates (``date``); ``keep`` leaves
    it as it is and needs a ``reason``.
    """

    policy: Literal["drop", "pseudonymize", "generalize", "keep"]
    domain: str | None = Field(
        None, description="pseudonymize: values in the same domain map alike (default: column)."
    )
    bins: list[float] | None = Field(None, description="generalize: ascending bin edges.")
    truncate: int | None = Field(None, ge=1, description="generalize: keep this many characters.")
    date: Literal["year", "month"] | None = Field(None, description="generalize: date precision.")
    reason: str | None = Field(None, description="keep: why this PII may stay (required).")

    @model_validator(mode="after")
    def _shape(self) -> PiiColumn:
        given = [k for k in ("bins", "truncate", "date") if getattr(self, k) is not None]
        if self.policy == "generalize" and len(given) != 1:
            raise _at(
                *given[1:2],
                what="policy generalize needs exactly one of 'bins', 'truncate', 'date'",
            )
        if self.policy != "generalize" and given:
            raise _at(given[0], what="only for policy generalize")
        if self.bins is not None and (
            len(self.bins) < 2
            or any(a >= b for a, b in zip(self.bins, self.bins[1:], strict=False))
        ):
            raise _at("bins", what="expected at least two strictly ascending edges")
        if self.policy == "keep" and not (self.reason or "").strip():
            raise _at(
                *(["reason"] if self.reason is not None else []),
                what="policy keep needs a 'reason'",
            )
        if self.domain is not None and self.policy != "pseudonymize":
            raise _at("domain", what="only for policy pseudonymize")
        return self


class PiiScanConfig(_Strict):
    """The scan for undeclared personal data; an undeclared PII column fails validation."""

    sample_rows: int = Field(20_000, ge=100, description="Rows sampled per column.")
    min_fraction: float = Field(
        0.3, gt=0, le=1, description="Share of non-null values that must match a pattern."
    )
    unsafe_skip: bool = Field(False, description="Do not scan. Logged and audited.")


class LabelNoiseConfig(_Strict):
    """Label flips: out-of-fold probabilities + confident learning.

    Flag only by default: on data with honest ambiguity the detector also flags hard,
    correctly labelled rows (about 7% of Adult), and quarantining them costs accuracy
    (0.5 to 0.8 points on Adult). Set ``policy: quarantine`` where labels may be attacked.
    """

    policy: Policy | None = "flag"
    folds: int = Field(5, ge=2, le=20)
    max_train_rows: int = Field(
        200_000, ge=1_000, description="Each fold's model trains on at most this many rows."
    )
    min_confidence: float = Field(
        0.7, ge=0.5, lt=1, description="Least out-of-fold probability of the other class."
    )


class OutlierConfig(_Strict):
    """Rows far from their own class in feature space (histogram scores per class)."""

    policy: Policy | None = "flag"
    threshold: float = Field(
        4.0, gt=0, description="Robust z-score of a row's outlier score that flags it."
    )


class DuplicatesConfig(_Strict):
    """Exact duplicates and floods of near-identical rows."""

    policy: Policy | None = None
    flood_size: int = Field(5, ge=2, description="A group this large is a flood.")
    near: bool = Field(
        True,
        description="Also group rows equal but for one low-cardinality column, or with every"
        " number within 2%.",
    )
    ignore: list[str] = Field(
        default_factory=list, description="Columns left out of the comparison (e.g. ids)."
    )


class BackdoorConfig(_Strict):
    """Rare values that predict one label among few rows (single values, not pairs)."""

    policy: Policy | None = None
    max_support: float = Field(0.02, gt=0, lt=0.5, description="Largest share of rows.")
    min_rows: int = Field(10, ge=3)
    min_purity: float = Field(0.9, gt=0.5, le=1, description="Share with the same label.")
    min_surprise: float = Field(
        12.0, gt=0, description="z-score of the label count against what the features predict."
    )
    min_lift: float = Field(
        0.5, gt=0, le=1, description="Share with the label minus the share the features predict."
    )


class ShiftConfig(_Strict):
    """Change against the last accepted version of the same source."""

    policy: Policy | None = "flag"
    psi: float = Field(0.25, gt=0, description="Per-column population stability index.")
    class_balance: float = Field(
        0.05, gt=0, lt=1, description="Largest change of the positive-class share."
    )


class ScreenConfig(_Strict):
    """The poisoning screen over training sources. Detectors find; ``policy`` decides."""

    policy: Policy = "quarantine"
    label_noise: LabelNoiseConfig = Field(default_factory=lambda: LabelNoiseConfig())
    outliers: OutlierConfig = Field(default_factory=lambda: OutlierConfig())
    duplicates: DuplicatesConfig = Field(default_factory=lambda: DuplicatesConfig())
    backdoor: BackdoorConfig = Field(default_factory=lambda: BackdoorConfig())
    shift: ShiftConfig = Field(default_factory=lambda: ShiftConfig())
    unsafe_skip: list[Detector] = Field(
        default_factory=list, description="Detectors not run. Logged and audited every run."
    )

    def policy_of(self, detector: str) -> str:
        """The detector's own policy, or the screen's."""
        own: str | None = getattr(self, detector).policy
        return own or self.policy


class DataConfig(_Strict):
    """Where the data comes from and what it must look like."""

    sources: dict[str, SourceConfig] = Field(min_length=1)
    schema_: dict[str, ColumnSpec] = Field(alias="schema", min_length=1)
    label: LabelConfig
    sensitive: list[str] = Field(default_factory=list)
    show_values: list[str] = Field(
        default_factory=list,
        description="Columns whose raw values may appear in messages, findings, reports and"
        " audit entries; every other value is masked there (e.g. ***-**-6789). Not for"
        " columns declared in pii.",
    )
    pii: dict[str, PiiColumn] = Field(default_factory=dict)
    pii_scan: PiiScanConfig = Field(default_factory=lambda: PiiScanConfig())
    checks: list[CustomCheck] = Field(default_factory=list)
    validation: ValidationConfig = Field(default_factory=lambda: ValidationConfig())
    screen: ScreenConfig = Field(default_factory=lambda: ScreenConfig())

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _columns_declared(self) -> DataConfig:
        for path, cols in (
            (("label", "column"), {"": self.label.column}),
            (("sensitive",), dict(enumerate(self.sensitive))),
            (("show_values",), dict(enumerate(self.show_values))),
            (("pii",), {c: c for c in self.pii}),
            (("screen", "duplicates", "ignore"), dict(enumerate(self.screen.duplicates.ignore))),
        ):
            for at, col in cols.items():
                if col not in self.schema_:
                    where = (*path, at) if at != "" else path
                    raise _at(*where, what=f"column {col!r} is not in data.schema")
        for name in self.sources:
            if not re.match(_NAME, name):
                raise _at("sources", name, what=f"source name {name!r}: expected {_NAME}")
        if self.label.column in self.pii:
            raise _at(
                "pii", self.label.column, what=f"the label {self.label.column!r} cannot be PII"
            )
        for i, col in enumerate(self.show_values):
            if col in self.pii:
                raise _at("show_values", i, what=f"PII column {col!r} is always masked")
        seen: set[str] = set()
        for i, check in enumerate(self.checks):
            if check.name in seen:
                raise _at("checks", i, "name", what=f"name {check.name!r} is used more than once")
            seen.add(check.name)
        if self.checks:  # compiled now, so a bad expression is reported with its line
            from bastion.errors import ConfigError
            from bastion.spec.expr import compile_check

            for i, check in enumerate(self.checks):
                try:
                    compile_check(check, self.schema_)
                except ConfigError as exc:
                    raise _at("checks", i, "expr", what=str(exc)) from None
        return self


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


class SplitConfig(_Strict):
    """Seeded, stratified split; or a named source as the test set."""

    test_source: str | None = Field(None, description="Use this source as the test set.")
    test_size: float = Field(0.2, gt=0, lt=1)
    stratify: bool = True


class NumericFeatures(_Strict):
    columns: list[str] = Field(default_factory=list)
    impute: Literal["mean", "median", "constant", "none"] = "median"
    scale: Literal["standard", "minmax", "robust", "none"] = "standard"


class CategoricalFeatures(_Strict):
    columns: list[str] = Field(default_factory=list)
    impute: Literal["most_frequent", "constant", "none"] = "most_frequent"
    encode: Literal["onehot", "ordinal"] = "onehot"
    max_categories: int | None = Field(None, ge=2)


class FeaturesConfig(_Strict):
    """A scikit-learn ColumnTransformer built from these lists."""

    numeric: NumericFeatures = Field(default_factory=lambda: NumericFeatures())
    categorical: CategoricalFeatures = Field(default_factory=lambda: CategoricalFeatures())
    drop: list[str] = Field(default_factory=list)
    use_sensitive: bool = Field(
        False, description="Let sensitive attributes into the features (off by default)."
    )


class ModelConfig(_Strict):
    """An allow-listed estimator and its parameters."""

    estimator: str = Field(description="e.g. HistGradientBoostingClassifier, LogisticRegression")
    params: dict[str, Any] = Field(default_factory=dict)


class FairnessConfig(_Strict):
    """How the sensitive attributes are grouped for the per-group metrics.

    A numeric sensitive attribute (schema type int or float) is cut into bins: the
    ascending edges given in ``bins`` (``age: [25, 45, 65]`` gives ``<25``, ``[25, 45)``,
    ``[45, 65)``, ``>=65``), or that many quantile bins of the test set (``age: 5``), else
    4 quantile bins. A group of fewer than ``min_group_size`` rows is shown with its count,
    marked too small, and left out of the differences; an attribute with more than
    ``max_groups`` groups gets a warning.
    """

    bins: dict[str, list[float] | Annotated[int, Field(ge=2, le=20)]] = Field(
        default_factory=dict,
        description="Per numeric sensitive column: ascending bin edges, or a number of"
        " quantile bins (default 4).",
    )
    min_group_size: int = Field(
        30, ge=1, description="Groups smaller than this are marked too small, not scored."
    )
    max_groups: int = Field(
        20, ge=2, description="An attribute with more groups than this gets a warning."
    )

    @field_validator("bins", mode="before")
    @classmethod
    def _bins_shape(cls, v: Any) -> Any:
        """One clear message per column, before pydantic tries each side of the union."""
        for col, edges in v.items() if isinstance(v, dict) else ():
            if isinstance(edges, int) and not isinstance(edges, bool):
                if not 2 <= edges <= 20:
                    raise _at(col, what=f"expected 2 to 20 quantile bins, got {edges}")
                continue
            numbers = isinstance(edges, list) and all(
                isinstance(e, int | float) and not isinstance(e, bool) for e in edges
            )
            if not numbers or not edges or sorted(set(edges)) != edges:
                raise _at(
                    col,
                    what="expected a number of quantile bins (2 to 20) or a list of at least"
                    f" one bin edge, strictly ascending; got {edges!r}",
                )
        return v


class EvaluateConfig(_Strict):
    """Metrics to report and gates a model must pass (``min_<metric>`` / ``max_<metric>``)."""

    metrics: list[Metric] = Field(
        default_factory=lambda: ["accuracy", "balanced_accuracy", "roc_auc", "f1"]  # type: ignore[arg-type]
    )
    gates: dict[str, float] = Field(
        default_factory=dict,
        description="min_<metric> or max_<metric>: threshold; every gate is computed, checked"
        " and shown, whatever metrics lists.",
    )
    fairness: FairnessConfig = Field(default_factory=lambda: FairnessConfig())

    @field_validator("gates")
    @classmethod
    def _gate_names(cls, v: dict[str, float]) -> dict[str, float]:
        check_gate_names(v, METRICS, "evaluate", noun="metric")
        return v


class ReleaseConfig(_Strict):
    """How the model is packaged and registered."""

    name: Annotated[str, Field(pattern=_NAME)]
    format: Literal["skops"] = "skops"
    description: str = ""
    intended_use: str = ""
    limitations: str = ""


class PipelineConfig(_Strict):
    """A whole pipeline file."""

    name: Annotated[str, Field(pattern=_NAME)]
    seed: int = Field(0, ge=0, le=2**32 - 1)
    threads: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = Field(
        "auto",
        description=(
            "Threads for fit, cross-validation and predict: 'auto' (the idle cores when the"
            " work starts) or a count. BASTION_THREADS overrides it. Never changes a result."
        ),
    )
    data: DataConfig
    split: SplitConfig = Field(default_factory=lambda: SplitConfig())
    features: FeaturesConfig
    model: ModelConfig
    evaluate: EvaluateConfig = Field(default_factory=lambda: EvaluateConfig())
    audits: AuditsConfig = Field(
        default_factory=lambda: AuditsConfig(),
        description="Attacks and measurements of the trained model, each with its gates.",
    )
    release: ReleaseConfig

    @model_validator(mode="after")
    def _cross_checks(self) -> PipelineConfig:
        data, label = self.data, self.data.label.column
        for group, cols in (
            ("numeric", self.features.numeric.columns),
            ("categorical", self.features.categorical.columns),
            ("drop", self.features.drop),
        ):
            where = ("features", group, "columns") if group != "drop" else ("features", "drop")
            for i, col in enumerate(cols):
                if col not in data.schema_:
                    raise _at(*where, i, what=f"column {col!r} is not in data.schema")
                if col == label:
                    raise _at(*where, i, what=f"the label {col!r} cannot be a feature")
                if group == "drop":
                    continue
                if col in data.sensitive and not self.features.use_sensitive:
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
        self._check_split()
        return self

    @model_validator(mode="after")
    def _check_fairness_bins(self) -> PipelineConfig:
        """``evaluate.fairness.bins`` names only numeric columns of ``data.sensitive``."""
        for col in self.evaluate.fairness.bins:
            where = ("evaluate", "fairness", "bins", col)
            if col not in self.data.sensitive:
                raise _at(*where, what=f"{col!r} is not listed in data.sensitive")
            kind = self.data.schema_[col].type
            if kind not in ("int", "float"):
                raise _at(*where, what=f"{col!r} is of type {kind}; only int and float bin")
        return self

    def _check_split(self) -> None:
        test, sources = self.split.test_source, list(self.data.sources)
        if test is not None and test not in sources:
            raise _at(
                "split",
                "test_source",
                what=f"{test!r} is not a data source (sources: {', '.join(sources)})",
            )


Problem = tuple[tuple[str, ...], str]


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


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a pipeline file, for editors."""
    schema = PipelineConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Bastion pipeline"
    return schema
