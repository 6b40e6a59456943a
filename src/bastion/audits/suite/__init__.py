"""The audits a pipeline runs after ``evaluate``, one small class each (see
:mod:`bastion.audits.base`), named as in the ``audits:`` section of the pipeline file.

- ``fairness`` — :class:`~bastion.audits.suite.fairness.FairnessAudit`
- ``robustness`` — :class:`~bastion.audits.suite.robustness.RobustnessAudit`
- ``membership`` — :class:`~bastion.audits.suite.membership.MembershipAudit`
- ``attribute_inference`` — :class:`~bastion.audits.suite.membership.AttributeInferenceAudit`
- ``extraction`` — :class:`~bastion.audits.suite.extraction.ExtractionAudit`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bastion.audits.base import Audit
    from bastion.spec.audits import AuditConfig

__all__ = ["audit_for"]


def audit_for(name: str, config: AuditConfig) -> Audit:
    """The audit called ``name`` (a key of the ``audits:`` section), configured."""
    if name == "fairness":
        from bastion.audits.suite.fairness import FairnessAudit

        return FairnessAudit(config)
    if name == "robustness":
        from bastion.audits.suite.robustness import RobustnessAudit

        return RobustnessAudit(config)
    if name == "membership":
        from bastion.audits.suite.membership import MembershipAudit

        return MembershipAudit(config)
    if name == "attribute_inference":
        from bastion.audits.suite.membership import AttributeInferenceAudit

        return AttributeInferenceAudit(config)
    if name == "extraction":
        from bastion.audits.suite.extraction import ExtractionAudit

        return ExtractionAudit(config)
    raise ValueError(f"no audit called {name!r}")
