"""The finding: what every data detector returns, and nothing more.

A :class:`Finding` is one suspicious row (``row`` is its 0-based position among the data
rows, header excluded) or, when ``row`` is None, one suspicious column or the table as a
whole. ``detector`` names what found it, ``reason`` is a stable reason code (the report and
the audit log group by it), ``score`` says how strongly (larger is more suspicious; each
detector documents its scale) and ``detail`` is one human sentence. Detectors never decide
what happens to a row: the policy in the pipeline file does (checks return findings,
policy decides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Finding"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One suspicious row, column or table, with why and how strongly."""

    row: int | None
    detector: str
    reason: str
    score: float
    detail: str = ""
    column: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"row", "detector", "reason", "score", "detail", "column"}``; score rounded."""
        return {
            "row": self.row,
            "detector": self.detector,
            "reason": self.reason,
            "score": round(float(self.score), 4),
            "detail": self.detail,
            "column": self.column,
        }
