"""Moved to :mod:`bastion.spec.config` (the spec layer); this name is kept for existing imports."""

from bastion.spec.config import *  # noqa: F403
