"""Moved to :mod:`bastion.spec.stage` (the spec layer); this name is kept for existing imports."""

from bastion.spec.stage import *  # noqa: F403
