"""Monitoring: live detection on the traffic a served model sees.

- :mod:`bastion.monitoring.profile` — the training profile (shipped with the model's
  signed release): each column's statistics, each value's surprisal, the encoded vectors.
- :mod:`bastion.monitoring.screening` — the input screen: is a request row like the
  training data?
- :mod:`bastion.monitoring.extraction` — the model-extraction detector, per principal:
  coverage, off-profile, synthetic-value, neighbourhood and one-feature statistics of its
  distinct queries against the training profile, one decision with a reason code.

Detectors return findings and alarms; the server's configured policy decides (flag or
reject a row; block, throttle or notify a principal: :mod:`bastion.serving.controls`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Alarm", "ExtractionMonitor", "InputScreen", "RowFindings", "TrainingProfile"]

if TYPE_CHECKING:
    from bastion.monitoring.extraction import Alarm, ExtractionMonitor
    from bastion.monitoring.profile import TrainingProfile
    from bastion.monitoring.screening import InputScreen, RowFindings

_WHERE = {
    "Alarm": "extraction",
    "ExtractionMonitor": "extraction",
    "InputScreen": "screening",
    "RowFindings": "screening",
    "TrainingProfile": "profile",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'bastion.monitoring' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"bastion.monitoring.{module}"), name)
