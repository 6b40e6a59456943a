"""Moved to :mod:`bastion.spec.loader` (the spec layer); this name is kept for existing imports."""

from bastion.spec.loader import *  # noqa: F403
