"""Audits: measurements of a trained model, recorded with the run; gates decide.

- :mod:`bastion.audits.fairness` — per-group rates and the gaps between groups of a
  sensitive attribute (demographic parity, disparate impact, equalized odds).
"""
