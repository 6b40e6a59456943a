"""The request contract of ``POST /v1/models/{name}/predict``, generated from the data schema.

A body is ``{"instances": [{"column": value, ...}, ...]}``. Every feature column the model
was fitted on (its *inputs*) is required, with the type, range and categories that the
pipeline's ``data.schema`` declares; ``null`` only where the column is nullable; NaN and
infinities never (orjson already refuses the ``NaN`` literal; a float is checked as well).
Booleans are not numbers here, even though Python says so.

Any other field is refused, and the message says which kind it is and lists the inputs: a
field the data schema *declares* but the model does not take (``fnlwgt``, ``race``, the
label: data minimisation) or one that is *not a field of this model* at all. A deployment
may opt to accept and drop the declared ones (``drop_declared``, ``bastion serve
--drop-declared-fields``): their values are never read, checked, kept or sent to the model.
Undeclared fields are refused whatever the option.

:meth:`RequestSchema.parse` returns the rows column by column (what the controls read) or
raises :class:`RequestRefused` with the HTTP status (413 too large, 422 invalid) and a list
of problems, each naming the instance index, the field and what was expected. Parsing is
plain Python on purpose: pydantic on the hot path costs more than the model does.

:class:`InputArrays` turns checked columns straight into the compiled model's input arrays
(numeric inputs as one float64 matrix, NaN for null; each categorical input as an integer
code) with no DataFrame; :meth:`RequestSchema.parse_arrays` is both steps in one call. A
DataFrame is built only for the scikit-learn fallback.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from bastion.spec.config import ColumnSpec

__all__ = ["MAX_PROBLEMS", "ColumnRule", "InputArrays", "RequestRefused", "RequestSchema"]

MAX_PROBLEMS = 20  # problems listed in one 422 body; more are counted, not listed
_MISSING = float("nan")  # a null of a nullable column, as the training data read it
_NUMERIC = frozenset({"int", "float", "bool"})
_CATEGORICAL = frozenset({"str", "category"})
_SHOWN_INPUTS = 24  # inputs named in a refusal; more are counted
_DECLARED = "declared in the data schema but not an input of this model (data minimisation)"
_UNKNOWN = "not a field of this model"
_DROPPED = {
    "description": "declared in the data schema, not an input of this model:"
    " accepted and dropped unread (--drop-declared-fields)"
}


class RequestRefused(Exception):
    """A request the server will not run: its HTTP status, a message and the problems."""

    def __init__(
        self,
        status: int,
        message: str,
        problems: list[dict[str, Any]] | None = None,
        decision: str = "invalid",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = list(problems or [])
        self.decision = decision
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """What one request field must hold."""

    name: str
    type: str  # int | float | str | category | bool
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: frozenset[str] | None = None
    ordered: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_spec(cls, name: str, spec: ColumnSpec) -> ColumnRule:
        cats = list(spec.categories) if spec.categories is not None else None
        return cls(
            name,
            spec.type,
            spec.nullable,
            spec.min,
            spec.max,
            frozenset(cats) if cats is not None else None,
            tuple(cats or ()),
        )

    def check(self, value: Any) -> str | None:
        """None when ``value`` is acceptable, else what was expected (no echo of secrets)."""
        if value is None:
            return None if self.nullable else f"a {self.type} (not null)"
        kind = self.type
        if kind == "int":
            # JSON Schema's integer includes 62.0; a float with a fraction is not one
            if type(value) is float and math.isfinite(value) and value.is_integer():
                return self._range(value)
            if type(value) is not int:
                return "an integer"
            return self._range(value)
        if kind == "float":
            if type(value) is int:
                return self._range(value)
            if type(value) is not float:
                return "a number"
            if not math.isfinite(value):
                return "a finite number"
            return self._range(value)
        if kind == "bool":
            return None if type(value) is bool else "true or false"
        if type(value) is not str:
            return "a string"
        if self.categories is not None and value not in self.categories:
            shown = ", ".join(self.ordered[:12]) + (", ..." if len(self.ordered) > 12 else "")
            return f"one of {shown}"
        return None

    def _range(self, value: float) -> str | None:
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            return f"a number in [{_num(self.min)}, {_num(self.max)}]"
        return None

    def describe(self) -> dict[str, Any]:
        """This field for people and scripts: name, type, nullable and its range or
        categories (``bastion serve``'s start line, ``bastion models show``)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.min is not None or self.max is not None:
            whole = self.type == "int"
            out["min"] = int(self.min) if whole and self.min is not None else self.min
            out["max"] = int(self.max) if whole and self.max is not None else self.max
        if self.categories is not None:
            out["categories"] = list(self.ordered)
        return out

    def json_schema(self) -> dict[str, Any]:
        """This field as JSON Schema (OpenAPI 3.1 dialect)."""
        base: dict[str, Any]
        if self.type == "int":
            base = {"type": "integer"}
        elif self.type == "float":
            base = {"type": "number"}
        elif self.type == "bool":
            base = {"type": "boolean"}
        else:
            base = {"type": "string"}
        if self.min is not None:
            base["minimum"] = self.min
        if self.max is not None:
            base["maximum"] = self.max
        if self.categories is not None:
            base["enum"] = list(self.ordered)
        if self.nullable:
            base["type"] = [base["type"], "null"]
            if "enum" in base:
                base["enum"] = [*base["enum"], None]
        return base


def _num(value: float | None) -> str:
    if value is None:
        return "-inf"
    return str(int(value)) if float(value).is_integer() else str(value)


class RequestSchema:
    """The fields of one deployment's instances, in the model's column order.

    ``declared`` names the other fields of the data schema (not inputs of the model);
    ``drop_declared`` accepts and drops them instead of refusing them. ``batch_limit``
    says, in a refusal, which setting bounds the rows of a request and how to raise it.
    """

    def __init__(
        self,
        rules: Iterable[ColumnRule],
        *,
        max_batch: int,
        declared: Iterable[str] = (),
        drop_declared: bool = False,
        batch_limit: str = "",
    ) -> None:
        self.rules = tuple(rules)
        if not self.rules:
            raise ValueError("a request schema needs at least one column")
        if max_batch < 1:
            raise ValueError(f"max_batch: expected a positive integer, got {max_batch}")
        self.columns = tuple(r.name for r in self.rules)
        self._names = frozenset(self.columns)
        self.declared = tuple(d for d in declared if d not in self._names)
        self._declared = frozenset(self.declared)
        self.drop_declared = drop_declared
        self.max_batch = max_batch
        self._batch_limit = f" ({batch_limit})" if batch_limit else ""
        shown = ", ".join(self.columns[:_SHOWN_INPUTS])
        if len(self.columns) > _SHOWN_INPUTS:
            shown += f", ... ({len(self.columns)} in all; GET /openapi.json lists them)"
        self._takes = f"; this model takes: {shown}"

    @classmethod
    def from_config(
        cls,
        schema: Mapping[str, ColumnSpec],
        columns: Iterable[str],
        *,
        max_batch: int,
        drop_declared: bool = False,
        batch_limit: str = "",
    ) -> RequestSchema:
        """Rules for ``columns`` (the model's input columns) from ``data.schema``; the
        schema's other columns are the declared fields."""
        rules = []
        for name in columns:
            spec = schema.get(name)
            if spec is None:
                raise ValueError(f"column {name!r}: the model needs it but data.schema lacks it")
            rules.append(ColumnRule.from_spec(name, spec))
        return cls(
            rules,
            max_batch=max_batch,
            declared=list(schema),
            drop_declared=drop_declared,
            batch_limit=batch_limit,
        )

    def parse(self, body: bytes) -> dict[str, list[Any]]:
        """Decode and check ``body``; return the columns. RequestRefused (422) otherwise."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise RequestRefused(422, "body: expected a JSON object (UTF-8, no NaN)") from None
        if type(doc) is not dict or set(doc) != {"instances"}:
            raise RequestRefused(422, 'body: expected {"instances": [...]} and nothing else')
        instances = doc["instances"]
        if type(instances) is not list or not instances:
            raise RequestRefused(422, "instances: expected a non-empty array of objects")
        if len(instances) > self.max_batch:
            raise RequestRefused(
                422,
                f"instances: expected at most {self.max_batch} rows per request, got"
                f" {len(instances)}{self._batch_limit}",
                decision="batch_too_large",
            )
        return self.columns_of(instances)

    def parse_arrays(self, body: bytes, arrays: InputArrays) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`parse`, then the model's input arrays (:class:`InputArrays`)."""
        return arrays(self.parse(body))

    def columns_of(self, instances: list[Any]) -> dict[str, list[Any]]:
        """Check each instance; return ``{column: [values...]}``."""
        out: dict[str, list[Any]] = {name: [] for name in self.columns}
        problems: list[dict[str, Any]] = []
        count = 0
        names, declared, drop = self._names, self._declared, self.drop_declared
        for index, row in enumerate(instances):
            if type(row) is not dict:
                count += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append({"instance": index, "field": None, "expected": "an object"})
                continue
            if len(row) != len(names) or not names.issuperset(row):
                for key in row:
                    if key in names or (drop and key in declared):
                        continue
                    count += 1
                    if len(problems) < MAX_PROBLEMS:
                        reason = _DECLARED if key in declared else _UNKNOWN
                        problems.append(
                            {"instance": index, "field": key[:64], "expected": f"absent: {reason}"}
                        )
            for rule in self.rules:
                if rule.name not in row:
                    count += 1
                    if len(problems) < MAX_PROBLEMS:
                        problems.append(
                            {"instance": index, "field": rule.name, "expected": "present"}
                        )
                    continue
                value = row[rule.name]
                why = rule.check(value)
                if why is not None:
                    count += 1
                    if len(problems) < MAX_PROBLEMS:
                        problems.append({"instance": index, "field": rule.name, "expected": why})
                    continue
                out[rule.name].append(value if value is not None else _MISSING)
        if count:
            raise RequestRefused(422, self._message(problems[0], count), problems)
        return out

    def _message(self, first: dict[str, Any], count: int) -> str:
        """The 422 message: the first problem, where it is, and how many in all."""
        where = f"instances[{first['instance']}]" + (
            f".{first['field']}" if first["field"] is not None else ""
        )
        expected: str = first["expected"]
        if expected.startswith("absent: "):  # a field the model does not take
            why = expected[len("absent: ") :]
            hint = ""
            if why == _DECLARED:
                hint = (
                    "; send only its inputs, or the operator may accept and drop such"
                    " fields with --drop-declared-fields"
                )
            return f"{where}: {why}{hint}{self._takes} ({count} problem(s) in all)"
        return f"{where}: expected {expected} ({count} problem(s) in all)"

    def instance_schema(self) -> dict[str, Any]:
        """One instance as a JSON Schema object (for the OpenAPI document); the declared
        fields are listed, as accepted and dropped, when the deployment drops them."""
        properties = {r.name: r.json_schema() for r in self.rules}
        if self.drop_declared:
            properties.update({name: dict(_DROPPED) for name in self.declared})
        return {
            "type": "object",
            "additionalProperties": False,
            "required": list(self.columns),
            "properties": properties,
        }

    def describe(self) -> list[dict[str, Any]]:
        """The inputs, in order, each as :meth:`ColumnRule.describe` gives it."""
        return [r.describe() for r in self.rules]


class InputArrays:
    """Checked columns → the compiled model's input arrays, without a DataFrame.

    ``numeric`` names the inputs that become the float64 matrix (in its column order);
    ``categorical`` maps each categorical input, in order, to its codes (category → code;
    any other string is ``len(codes)``, unknown; null is ``len(codes) + 1``, missing).
    ``schema`` must give numeric inputs a number type and categorical ones a string type,
    or :class:`ValueError` names the column.
    """

    def __init__(
        self,
        schema: RequestSchema,
        numeric: Iterable[str],
        categorical: Iterable[tuple[str, Mapping[str, int]]],
    ) -> None:
        rules = {r.name: r for r in schema.rules}
        self.numeric = tuple(numeric)
        self.categorical = tuple((name, dict(codes)) for name, codes in categorical)
        names = [*self.numeric, *(n for n, _ in self.categorical)]
        if sorted(names) != sorted(schema.columns):
            raise ValueError("the model's inputs are not the request's columns")
        for name in self.numeric:
            if rules[name].type not in _NUMERIC:
                raise ValueError(f"column {name!r}: a numeric input of type {rules[name].type}")
        for name, _ in self.categorical:
            if rules[name].type not in _CATEGORICAL:
                raise ValueError(f"column {name!r}: a categorical input of type {rules[name].type}")

    def __call__(self, columns: Mapping[str, Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(numeric rows × inputs float64, codes rows × inputs intp) for checked columns."""
        rows = len(next(iter(columns.values()))) if columns else 0
        if self.numeric:
            numeric = np.array([columns[n] for n in self.numeric], dtype=np.float64).T
        else:
            numeric = np.zeros((rows, 0))
        codes = np.empty((rows, len(self.categorical)), dtype=np.intp)
        for j, (name, table) in enumerate(self.categorical):
            unknown, missing = len(table), len(table) + 1
            get = table.get
            codes[:, j] = [get(v, unknown) if type(v) is str else missing for v in columns[name]]
        return numeric, codes
