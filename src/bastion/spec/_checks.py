"""The strict base model, the name pattern, positioned validation errors and the gate-name
check, shared by the pipeline file's models (:mod:`bastion.spec.config` and its sections)."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

__all__ = ["AT", "NAME", "Strict", "at", "check_gate_names"]

NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
"""A pipeline's, a source's or a release's name."""

AT = "bastion_at"
"""The pydantic error type of a cross-field check that names its own node (see :func:`at`)."""


class Strict(BaseModel):
    """A section of the pipeline file: unknown keys are errors, values frozen and stripped."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def at(*path: str | int, what: str) -> PydanticCustomError:
    """A validation error positioned at ``path`` below the model that raises it, so the
    loader cites that node's line and column (a list item, a key), not the model's."""
    return PydanticCustomError(AT, "{what}", {"what": what, "at": tuple(str(p) for p in path)})


def check_gate_names(
    gates: Iterable[str], known: Iterable[str], who: str, *, noun: str = "value"
) -> None:
    """Each key must be ``min_<noun>`` or ``max_<noun>`` of a name in ``known``; ``who``
    says what computes them ("evaluate", "this audit") in the error."""
    names = tuple(known)
    for key in gates:
        kind, _, value = key.partition("_")
        if kind not in ("min", "max"):
            raise at(key, what=f"expected min_<{noun}> or max_<{noun}>")
        if value not in names:
            raise at(
                key,
                what=f"{who} does not compute {value!r}; a gate may name one of {', '.join(names)}",
            )
