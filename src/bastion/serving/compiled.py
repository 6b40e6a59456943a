"""Which engine a deployment predicts with: the compiled form, or scikit-learn, and why.

The release signs two outputs of the release stage beside the model (see
``stages/release.py``): ``NAME:VERSION/compiled`` and ``NAME:VERSION/parity``. Their
digests come from the verified release statement (the model's :class:`Contract`), and the
store checks the bytes against them, so a changed blob or a substituted digest raises
:class:`~bastion.errors.IntegrityError` here and the server refuses to start: a tampered
compiled artifact never silently falls back. Both are read and checked whenever the release
names them, whichever engine is then chosen.

The compiled form is used when the signed parity passed, it validates
(:func:`~bastion.spec.compiled.load_compiled`) and its inputs are the request's columns
with matching types; otherwise the deployment predicts with the scikit-learn pipeline and
:func:`choose_engine` says why (a log line, the start summary, the ``serve.start`` entry).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bastion.errors import IntegrityError
from bastion.serving.requests import InputArrays, RequestSchema
from bastion.spec.compiled import CompiledModel, load_compiled

__all__ = ["COMPILED", "ENGINES", "SKLEARN", "Engine", "choose_engine", "sklearn_predictor"]

log = logging.getLogger("bastion.serving")

COMPILED = "compiled"
SKLEARN = "scikit-learn"
ENGINES = ("auto", SKLEARN)  # what ServeOptions.inference may ask for


@dataclass(frozen=True)
class Engine:
    """A deployment's predictor (rows by column → probability matrix), its name and why."""

    predict: Callable[[dict[str, list[Any]]], Any]
    name: str
    reason: str = ""
    parity: dict[str, Any] | None = None


def choose_engine(
    read: Callable[[str], bytes],
    ref: str,
    contract: Any,
    model: Any,
    schema: RequestSchema,
    *,
    prefer: str = "auto",
) -> Engine:
    """The engine for ``model`` (verified, released as ``ref``). ``read`` returns verified
    store bytes by digest (IntegrityError otherwise, which propagates)."""
    compiled_digest = getattr(contract, "compiled", None)
    parity_digest = getattr(contract, "parity", None)
    if not compiled_digest or not parity_digest:
        return _fallback(
            model, schema, ref, "its release has no compiled form (released before it)"
        )
    parity = _parity(read(parity_digest), ref)
    data = read(compiled_digest)  # verified against the signed digest, whatever is chosen
    status = parity.get("status")
    if status != "passed":
        why = parity.get("reason") or ""
        return _fallback(
            model, schema, ref, f"parity {status}" + (f": {why}" if why else ""), parity
        )
    try:
        compiled = load_compiled(data)
    except IntegrityError as exc:
        raise IntegrityError(f"{ref}: {exc}") from None
    if prefer == SKLEARN:
        return _fallback(model, schema, ref, "the operator asked for scikit-learn", parity)
    try:
        arrays = InputArrays(
            schema,
            compiled.numeric,
            [(name, compiled.codes[j]) for j, name in enumerate(compiled.categorical)],
        )
    except ValueError as exc:
        return _fallback(
            model, schema, ref, f"the compiled inputs do not fit the requests: {exc}", parity
        )
    log.info(
        "%s: serving the compiled form (parity passed on %s held-out rows, max |diff| %.1e)",
        ref,
        parity.get("rows"),
        parity.get("max_abs_diff") or 0.0,
    )
    return Engine(_compiled_predictor(compiled, arrays), COMPILED, "", parity)


def _parity(data: bytes, ref: str) -> dict[str, Any]:
    try:
        parity = json.loads(data)
    except ValueError:
        raise IntegrityError(f"{ref}: its signed parity record does not parse") from None
    if not isinstance(parity, dict) or parity.get("status") not in (
        "passed",
        "failed",
        "unsupported",
    ):
        raise IntegrityError(f"{ref}: its signed parity record: expected a status")
    return parity


def _fallback(
    model: Any, schema: RequestSchema, ref: str, reason: str, parity: dict[str, Any] | None = None
) -> Engine:
    log.warning("%s: serving with scikit-learn, not the compiled form: %s", ref, reason)
    return Engine(sklearn_predictor(model, schema.columns), SKLEARN, reason, parity)


def _compiled_predictor(compiled: CompiledModel, arrays: InputArrays) -> Callable[..., Any]:
    def predict(data: dict[str, list[Any]]) -> Any:
        return compiled.predict_proba(*arrays(data))

    return predict


def sklearn_predictor(model: Any, columns: Sequence[str]) -> Callable[..., Any]:
    """Rows → the probability matrix through a DataFrame and the scikit-learn pipeline."""
    import pandas as pd

    names = list(columns)

    def predict(data: dict[str, list[Any]]) -> Any:
        return model.predict_proba(pd.DataFrame(data, columns=names))

    return predict
