"""Defenses: what screens or changes data and models to protect them.

- :mod:`bastion.defenses.findings` — the one finding record every detector returns.
- :mod:`bastion.defenses.poisoning` — the poisoning screen (label noise, outliers,
  duplicate floods, backdoor triggers) over one table.
- :mod:`bastion.defenses.shift` — a table's profile and its shift against the last
  accepted profile of the same source.
- :mod:`bastion.defenses.pii` — PII detection and the per-column policies (drop,
  pseudonymize, generalize, keep).

Detectors return findings; the pipeline's policy decides (flag, quarantine or fail).
"""
