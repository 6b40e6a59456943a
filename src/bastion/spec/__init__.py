"""The spec layer: what a pipeline is, before anything runs it.

- :mod:`bastion.spec.config` — the pipeline file's schema (strict pydantic models).
- :mod:`bastion.spec.loader` — reads the file; every error names the file, line and key.
- :mod:`bastion.spec.stage` — the stage protocol: :class:`~bastion.spec.stage.Stage`, its
  context, the artifact kinds and their encode/decode.
- :mod:`bastion.spec.expr` — the small, safe expression language of custom checks.

It sits at the bottom: stages, defenses and the runner import it; it imports none of them
(only :mod:`bastion.errors` and the standard and data libraries).
"""
