"""The pipeline file: pydantic models, strict (unknown keys are errors), one per section.

A pipeline file is YAML::

    name: adult-income
    seed: 42
    data: {sources: {...}, schema: {...}, label: {...}, sensitive: [...], pii: [...]}
    split: {...}
    features: {...}
    model: {...}
    evaluate: {...}
    release: {...}

:func:`bastion.pipeline.loader.load_pipeline` reads the file and turns every validation
error into a :class:`~bastion.errors.ConfigError` that names the file, the line, the key,
what was expected and what was given. ``bastion schema`` prints :func:`json_schema`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "ColumnSpec",
    "DataConfig",
    "EvaluateConfig",
    "FeaturesConfig",
    "LabelConfig",
    "ModelConfig",
    "PipelineConfig",
    "ReleaseConfig",
    "SourceConfig",
    "SplitConfig",
    "ValidationConfig",
    "json_schema",
]

_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
    url: str | None = Field(None, description="SQLAlchemy URL (format sql); may use ${ENV}.")
    query: str | None = Field(None, description="SELECT statement (format sql).")
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
            raise ValueError("'categories' is only for type category")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError("'min'/'max' are only for int and float columns")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class LabelConfig(_Strict):
    """The target column; ``map`` rewrites raw values (e.g. Adult's ``>50K.`` → ``>50K``)."""

    column: str
    positive: str = Field(description="The value that counts as the positive class.")
    map: dict[str, str] = Field(default_factory=dict)


class ValidationConfig(_Strict):
    """What to do with rows that break the schema."""

    policy: Literal["fail", "quarantine"] = "fail"
    max_report: int = Field(50, ge=1, le=10_000, description="Violations listed in reports.")


class DataConfig(_Strict):
    """Where the data comes from and what it must look like."""

    sources: dict[str, SourceConfig] = Field(min_length=1)
    schema_: dict[str, ColumnSpec] = Field(alias="schema", min_length=1)
    label: LabelConfig
    sensitive: list[str] = Field(default_factory=list)
    pii: list[str] = Field(default_factory=list)
    validation: ValidationConfig = Field(default_factory=lambda: ValidationConfig())

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _columns_declared(self) -> DataConfig:
        for what, cols in (
            ("label", [self.label.column]),
            ("sensitive", self.sensitive),
            ("pii", self.pii),
        ):
            for col in cols:
                if col not in self.schema_:
                    raise ValueError(f"{what} column {col!r} is not in the schema")
        for name in self.sources:
            if not re.match(_NAME, name):
                raise ValueError(f"source name {name!r}: expected {_NAME}")
        return self


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


class EvaluateConfig(_Strict):
    """Metrics to report and gates a model must pass (``min_<metric>`` / ``max_<metric>``)."""

    metrics: list[
        Literal[
            "accuracy",
            "balanced_accuracy",
            "roc_auc",
            "f1",
            "precision",
            "recall",
            "log_loss",
            "brier",
        ]
    ] = Field(default_factory=lambda: ["accuracy", "balanced_accuracy", "roc_auc", "f1"])  # type: ignore[arg-type]
    gates: dict[str, float] = Field(default_factory=dict)

    @field_validator("gates")
    @classmethod
    def _gate_names(cls, v: dict[str, float]) -> dict[str, float]:
        known = {
            "accuracy",
            "balanced_accuracy",
            "roc_auc",
            "f1",
            "precision",
            "recall",
            "log_loss",
            "brier",
        }
        for key in v:
            kind, _, metric = key.partition("_")
            if kind not in ("min", "max") or metric not in known:
                raise ValueError(
                    f"gate {key!r}: expected min_<metric> or max_<metric> with a metric in"
                    f" {sorted(known)}"
                )
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
    data: DataConfig
    split: SplitConfig = Field(default_factory=lambda: SplitConfig())
    features: FeaturesConfig
    model: ModelConfig
    evaluate: EvaluateConfig = Field(default_factory=lambda: EvaluateConfig())
    release: ReleaseConfig

    @model_validator(mode="after")
    def _cross_checks(self) -> PipelineConfig:
        schema = self.data.schema_
        named = (
            self.features.numeric.columns + self.features.categorical.columns + self.features.drop
        )
        for col in named:
            if col not in schema:
                raise ValueError(f"features: column {col!r} is not in data.schema")
        if self.data.label.column in named:
            raise ValueError(f"features: the label {self.data.label.column!r} cannot be a feature")
        if not self.features.use_sensitive:
            leaked = set(self.data.sensitive) & set(
                self.features.numeric.columns + self.features.categorical.columns
            )
            if leaked:
                raise ValueError(
                    f"features: sensitive column(s) {sorted(leaked)} used as features;"
                    " set features.use_sensitive: true to allow it"
                )
        if self.split.test_source is not None and self.split.test_source not in self.data.sources:
            raise ValueError(f"split.test_source {self.split.test_source!r} is not a data source")
        return self


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a pipeline file, for editors."""
    schema = PipelineConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Bastion pipeline"
    return schema
