"""Audits: measurements of a trained model, recorded with the run; gates decide.

- :mod:`bastion.audits.fairness` — per-group rates and the gaps between groups of a
  sensitive attribute (demographic parity, disparate impact, equalized odds), alone and
  crossed, with bootstrap intervals; the groups (bins, pooling, crossing) in
  :mod:`bastion.audits.fairness_groups`.
- :mod:`bastion.audits.mitigation` — fairlearn's ThresholdOptimizer / ExponentiatedGradient
  around an estimator, with the fairness numbers before and after.
- :mod:`bastion.audits.membership` — membership inference (LOSS, RMIA) and attribute
  inference: how much the model gives away about its training rows; the attacks' ROC
  metrics with bootstrap intervals in :mod:`bastion.audits.roc_metrics`, attribute
  inference in :mod:`bastion.audits.attribute_inference`.
- :mod:`bastion.audits.constraints` — what an adversarial row may change, from the schema:
  immutable (sensitive) columns, declared categories, integers, ranges.
- :mod:`bastion.audits.robustness` — batched FGSM/PGD (linear and MLP models) and a
  decision-based attack for any model, robust accuracy against budget with sanity checks;
  the attacks themselves in :mod:`bastion.audits.whitebox` (FGSM/PGD, analytic margin
  gradients) and :mod:`bastion.audits.blackbox` (label-only, any estimator).
- :mod:`bastion.audits.executor` — one ``map`` interface for the audits' independent tasks
  (local processes; Ray later).
"""
