"""The PII stage: scan every validated table for personal data, then apply ``data.pii``.

Runs after ``validate.<source>`` and before anything else reads the table, so no later
artifact — splits, features, models, reports — holds a raw identifier. The raw snapshot
stays where it is: encrypted in the store, as ingested.

1. :func:`~bastion.defenses.pii.scan_table` looks at every column (a sample of values and
   the column's name). A hit on a column no ``data.pii`` rule names fails the stage with a
   :class:`~bastion.errors.DataError` naming the column, the pattern and masked examples.
   ``data.pii_scan.unsafe_skip`` turns the scan off; that is audited on every run.
2. :func:`~bastion.defenses.pii.apply_pii_policies` applies each declared rule: ``drop``,
   ``pseudonymize`` (keyed HMAC-SHA256 with the workspace's pseudonym key: stable across
   runs and tables, different after ``bastion keys rotate --pseudonym``), ``generalize``
   or ``keep``.

Outputs: ``table`` (the protected table) and ``report`` (kind ``json``: the scan's hits
with masked examples, what each rule did, the pseudonym key id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bastion.defenses.pii.policy import apply_pii_policies, pii_error, undeclared
from bastion.defenses.pii.scan import scan_table
from bastion.spec.stage import Stage

if TYPE_CHECKING:
    from bastion.spec.config import DataConfig
    from bastion.spec.stage import Kind, StageContext

__all__ = ["PiiStage"]


class PiiStage(Stage):
    """Scan ``validate.<source>.table`` for PII and apply the declared policies."""

    version = "1"

    def __init__(self, source_name: str, data: DataConfig) -> None:
        self.source_name = source_name
        self.data_report = (source_name, "pii")
        self.data = data
        # only then does the runner hand over the pseudonymizer and put the active pseudonym
        # key's id in the cache key (a rotation re-runs this stage, and nothing else does)
        self.uses_pseudonym_key = any(r.policy == "pseudonymize" for r in data.pii.values())
        self.name = f"pii.{source_name}"
        self.inputs: Mapping[str, str] = {"table": f"validate.{source_name}.table"}
        self.outputs: Mapping[str, Kind] = {"table": "table", "report": "json"}

    def fingerprint(self) -> Mapping[str, Any]:
        return {
            "pii": {c: r.model_dump(mode="json") for c, r in self.data.pii.items()},
            "scan": self.data.pii_scan.model_dump(mode="json"),
            "label": self.data.label.column,
        }

    def unsafe(self) -> list[str]:
        """The unsafe settings this stage runs with (audited by the runner every run)."""
        return ["data.pii_scan.unsafe_skip"] if self.data.pii_scan.unsafe_skip else []

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        table = inputs["table"]
        scan = self.data.pii_scan
        hits = []
        if not scan.unsafe_skip:
            hits = scan_table(
                table,
                sample_rows=scan.sample_rows,
                min_fraction=scan.min_fraction,
                seed=ctx.seed,
                skip=(self.data.label.column,),
            )
            missing = undeclared(hits, self.data.pii)
            if missing:
                ctx.audit(
                    "pii.undeclared",
                    "failed",
                    columns=[h.column for h in missing],
                    patterns=[h.pattern for h in missing],
                )
                raise pii_error(missing)
        out, applied = table, dict[str, Any]()
        if self.data.pii:  # nothing declared: the table passes through, unchanged
            out, applied = apply_pii_policies(table, self.data.pii, ctx.pseudonymizer)
        if applied:
            ctx.audit("pii.applied", "ok", columns={c: r["policy"] for c, r in applied.items()})
        report = {
            "source": self.source_name,
            "scanned": not scan.unsafe_skip,
            "hits": [h.to_json() for h in hits],
            "applied": applied,
            "columns_out": [str(c) for c in out.columns],
        }
        ctx.summary[self.name] = {"hits": len(hits), "applied": len(applied)}
        return {"table": out, "report": report}
