"""PII: find personal data in a table, and apply the policy the pipeline declares for it.

- :mod:`~bastion.defenses.pii.scan` — :func:`scan_table` finds the columns that look like
  personal data (by values: patterns with Luhn, mod-97, SSN and birth-date checks; and by
  column name) and returns :class:`PiiHit` records, never a raw value.
- :mod:`~bastion.defenses.pii.policy` — :func:`apply_pii_policies` applies the pipeline's
  ``data.pii`` rules (drop, pseudonymize with the keyring's HMAC key, generalize, keep);
  :func:`undeclared` and :func:`pii_error` turn uncovered hits into the error that fails
  validation.
- :mod:`~bastion.defenses.pii.masking` — :func:`mask` and :func:`shown`, how any message,
  finding or report may show a data value.

Checks return hits; the pipeline decides.
"""

from __future__ import annotations

from bastion.defenses.pii.masking import mask, shown
from bastion.defenses.pii.policy import (
    KeyringPseudonymizer,
    Pseudonymizer,
    apply_pii_policies,
    pii_error,
    undeclared,
)
from bastion.defenses.pii.scan import PATTERNS, PiiHit, scan_table

__all__ = [
    "PATTERNS",
    "KeyringPseudonymizer",
    "PiiHit",
    "Pseudonymizer",
    "apply_pii_policies",
    "mask",
    "pii_error",
    "scan_table",
    "shown",
    "undeclared",
]
