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

Sections with modules of their own, whose names are importable from here too:
:mod:`bastion.spec.screen` (``data.screen``) and :mod:`bastion.spec.evaluate`
(``evaluate``); :mod:`bastion.spec.audits` (``audits``). The checks across fields and
sections are in :mod:`bastion.spec.cross_checks`, :func:`file_problems` among them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from bastion.spec._checks import NAME as _NAME
from bastion.spec._checks import Strict
from bastion.spec._checks import at as _at
from bastion.spec.audits import AuditsConfig
from bastion.spec.cross_checks import (
    check_data,
    check_fairness_bins,
    check_features,
    check_split,
    file_problems,
)
from bastion.spec.evaluate import METRICS, EvaluateConfig, FairnessConfig
from bastion.spec.screen import (
    DETECTORS,
    BackdoorConfig,
    DuplicatesConfig,
    LabelNoiseConfig,
    OutlierConfig,
    ScreenConfig,
    ShiftConfig,
)

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

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CsvOptions(Strict):
    """How to parse a CSV source."""

    delimiter: str = Field(",", min_length=1, max_length=1)
    skip_initial_space: bool = Field(False, description="Strip spaces after the delimiter.")
    na_values: list[str] = Field(default_factory=list, description="Extra strings read as null.")
    encoding: str = "utf-8"


class SourceConfig(Strict):
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


class ColumnSpec(Strict):
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


class LabelConfig(Strict):
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


class ValidationConfig(Strict):
    """What to do with rows that break the schema."""

    policy: Literal["fail", "quarantine"] = "fail"
    max_report: int = Field(50, ge=1, le=10_000, description="Violations listed in reports.")


_CHECK_NAME = r"^[a-z][a-z0-9_]{0,63}$"


class CustomCheck(Strict):
    """A row rule over several columns, e.g. ``"`capital-gain` == 0 or `capital-loss` == 0"``.

    The expression language is small and safe (no calls, no attributes, nothing imported):
    column names (in backticks when they are not identifiers), numbers, strings, ``True``,
    ``False``, comparisons (chained too), ``and``/``or``/``not``, ``+ - * / % **``,
    ``in [...]`` and ``is_null(`col`)``/``not_null(`col`)``. A row passes when it is true.
    """

    name: Annotated[str, Field(pattern=_CHECK_NAME)]
    expr: str = Field(min_length=1, max_length=2000)
    message: str = Field("", description="What a failing row means, for the report.")


class PiiColumn(Strict):
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


class PiiScanConfig(Strict):
    """The scan for undeclared personal data; an undeclared PII column fails validation."""

    sample_rows: int = Field(20_000, ge=100, description="Rows sampled per column.")
    min_fraction: float = Field(
        0.3, gt=0, le=1, description="Share of non-null values that must match a pattern."
    )
    unsafe_skip: bool = Field(False, description="Do not scan. Logged and audited.")


class DataConfig(Strict):
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
        check_data(self)
        return self


class SplitConfig(Strict):
    """Seeded, stratified split; or a named source as the test set."""

    test_source: str | None = Field(None, description="Use this source as the test set.")
    test_size: float = Field(0.2, gt=0, lt=1)
    stratify: bool = True


class NumericFeatures(Strict):
    columns: list[str] = Field(default_factory=list)
    impute: Literal["mean", "median", "constant", "none"] = "median"
    scale: Literal["standard", "minmax", "robust", "none"] = "standard"


class CategoricalFeatures(Strict):
    columns: list[str] = Field(default_factory=list)
    impute: Literal["most_frequent", "constant", "none"] = "most_frequent"
    encode: Literal["onehot", "ordinal"] = "onehot"
    max_categories: int | None = Field(None, ge=2)


class FeaturesConfig(Strict):
    """A scikit-learn ColumnTransformer built from these lists."""

    numeric: NumericFeatures = Field(default_factory=lambda: NumericFeatures())
    categorical: CategoricalFeatures = Field(default_factory=lambda: CategoricalFeatures())
    drop: list[str] = Field(default_factory=list)
    use_sensitive: bool = Field(
        False, description="Let sensitive attributes into the features (off by default)."
    )


class ModelConfig(Strict):
    """An allow-listed estimator and its parameters."""

    estimator: str = Field(description="e.g. HistGradientBoostingClassifier, LogisticRegression")
    params: dict[str, Any] = Field(default_factory=dict)


class ReleaseConfig(Strict):
    """How the model is packaged and registered."""

    name: Annotated[str, Field(pattern=_NAME)]
    format: Literal["skops"] = "skops"
    description: str = ""
    intended_use: str = ""
    limitations: str = ""


class PipelineConfig(Strict):
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
        check_features(self)
        check_split(self)
        return self

    @model_validator(mode="after")
    def _check_fairness_bins(self) -> PipelineConfig:
        """``evaluate.fairness.bins`` names only numeric columns of ``data.sensitive``."""
        check_fairness_bins(self)
        return self


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a pipeline file, for editors."""
    schema = PipelineConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Bastion pipeline"
    return schema
