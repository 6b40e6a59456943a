"""Moved to :mod:`bastion.spec.serialization` (the spec layer); this name is kept for
existing imports."""

from bastion.spec.serialization import *  # noqa: F403
