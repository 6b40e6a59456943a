"""Bastion: a secure-by-default machine-learning pipeline framework.

Every stage of a pipeline (ingest, validate, features, train, evaluate, release, serve,
monitor) runs with its security controls on, and leaves evidence that they ran. This
package is the public API; the CLI (``bastion``) and, later, the server are thin shells
over it.

The architecture in one screen::

    cli/ ─────────────┐        shells: parse, call the API, print; catch errors once
    (serving/)        │
                      ▼
    workspace.Workspace        one home folder, opened with the passphrase AND a token: its
                               identity is the actor of every operation, each authorized
                               by Workspace.authorize (denials audited) — the CLI's and the
                               server's path too; the services below are internal
      ├─ security.keys         keyring: KEKs wrap per-artifact data keys; Ed25519 signing
      ├─ store.artifacts       encrypted, content-addressed blobs (docs/formats/artifact.md)
      ├─ store.db              metadata in SQL (SQLite or PostgreSQL), Alembic migrations
      ├─ security.audit        hash-chained log + signed Merkle checkpoints, group commit
      ├─ security.access       principals, roles, grants, hashed API tokens
      └─ security.signing      DSSE envelopes, in-toto statements (provenance)
    pipeline.runner            stages in order, cached, stored, signed and audited:
      ingest → validate → pii → screen (training sources) → split → features → train
      → evaluate → audits (fairness, robustness, membership, attribute inference,
      extraction) → signed evaluation → release
    defenses/                  detectors and protections the stages use: poisoning screen,
                               shift, PII (scan, pseudonymize, generalize)
    data                       the same screen and checks on a file, outside a pipeline

Imports flow one way: shells → workspace → security/store. ``errors`` is the one error
tree every layer raises from. Heavy modules load lazily, so ``import bastion`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Pipeline",
    "Workspace",
    "__version__",
    "check_file",
    "errors",
    "pipeline_schema",
    "read_file",
    "screen_config",
    "screen_file",
]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from bastion import errors
    from bastion.data import check_file, read_file, screen_config, screen_file
    from bastion.pipeline.config import json_schema as pipeline_schema
    from bastion.pipeline.runner import Pipeline
    from bastion.workspace import Workspace


def __getattr__(name: str) -> Any:
    if name == "Workspace":
        from bastion.workspace import Workspace

        return Workspace
    if name == "Pipeline":
        from bastion.pipeline.runner import Pipeline

        return Pipeline
    if name == "pipeline_schema":
        from bastion.pipeline.config import json_schema

        return json_schema
    if name in ("check_file", "read_file", "screen_config", "screen_file"):
        import bastion.data

        return getattr(bastion.data, name)
    if name == "errors":
        import bastion.errors

        return bastion.errors
    raise AttributeError(f"module 'bastion' has no attribute {name!r}")
