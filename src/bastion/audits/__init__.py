"""Audits: measurements of a trained model, recorded with the run; gates decide.

- :mod:`bastion.audits.fairness` — per-group rates and the gaps between groups of a
  sensitive attribute (demographic parity, disparate impact, equalized odds), alone and
  crossed, with bootstrap intervals.
- :mod:`bastion.audits.mitigation` — fairlearn's ThresholdOptimizer / ExponentiatedGradient
  around an estimator, with the fairness numbers before and after.
- :mod:`bastion.audits.membership` — membership inference (LOSS, RMIA) and attribute
  inference: how much the model gives away about its training rows.
- :mod:`bastion.audits.executor` — one ``map`` interface for the audits' independent tasks
  (local processes; Ray later).
"""
