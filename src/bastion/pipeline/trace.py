"""The provenance walk: from a model's digest back to the pinned data it was made from.

:func:`trace` finds, for a digest, a signed stage statement that names it as a subject and
verifies under a trusted key; each artifact material of that statement is traced in turn,
until only pinned sources (the ingested data digests) remain. Every artifact on the way is
decrypted and verified in the store first (once: ``checked``). The verified statements and
the sources the chain ends in are handed back; :meth:`ModelRegistry.verify_record
<bastion.pipeline.registry.ModelRegistry.verify_record>` refuses a model without such a path.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bastion.errors import Error, IntegrityError
from bastion.pipeline.provenance import STAGE_PREDICATE

if TYPE_CHECKING:
    from bastion.workspace import Workspace

__all__ = ["Trace", "trace"]

Verify = Callable[[Any, Mapping[str, Any]], dict[str, Any]]
"""``verify(envelope, trusted)``: the verified statement, or an Error."""


@dataclass
class Trace:
    """A signed path from an artifact back to pinned sources: the verified stage
    statements it uses (the artifact's producer first) and the sources it ends in."""

    chain: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, str]] = field(default_factory=list)


def trace(
    ws: Workspace,
    digest: str,
    trusted: Mapping[str, Any],
    verify: Verify,
    where: str,
    checked: set[str],
) -> Trace | None:
    """The signed path from ``digest`` back to pinned sources, or None when there is none.

    ``where`` names the model in errors; ``checked`` holds digests whose blobs are already
    verified (those verified here are added). A statement that fails to verify, with no
    other path, raises IntegrityError naming the artifact."""
    walk = _Walk(ws, trusted, verify, where, checked)
    return walk.result if walk.trace(digest) else None


class _Walk:
    """One walk; ``memo`` keeps what each (digest, name) came to (None: in progress)."""

    def __init__(
        self,
        ws: Workspace,
        trusted: Mapping[str, Any],
        verify: Verify,
        where: str,
        checked: set[str],
    ) -> None:
        self.ws = ws
        self.trusted = trusted
        self.verify = verify
        self.where = where
        self.checked = checked
        self.memo: dict[tuple[str, str | None], bool | None] = {}
        self.result = Trace()

    def trace(self, digest: str, name: str | None = None) -> bool:
        """True when ``digest`` is produced by a verified stage statement whose artifact
        materials are themselves traced, down to pinned sources. Appends what it used.

        ``name`` is the ``stage.output`` the consumer read it as (its material's name).
        Stages that pass a table through unchanged give several outputs the same digest
        (content addressing); the statement that names the output is tried first, so the
        chain shows every stage the data went through, not a shortcut. Any other statement
        that verifies and traces is still accepted: the order is all this changes."""
        key = (digest, name)
        if key in self.memo:
            return bool(self.memo[key])  # None while in progress: a cycle is not a path
        self.memo[key] = None
        chain, sources = self.result.chain, self.result.sources
        problems = []
        for envelope in self._producers(digest, name):
            try:
                statement: dict[str, Any] = self.verify(envelope, self.trusted)
            except Error as exc:
                problems.append(str(exc))
                continue
            if statement["predicateType"] != STAGE_PREDICATE:
                continue
            materials = statement["predicate"].get("materials", [])
            if any(m.get("kind") not in ("artifact", "source") for m in materials):
                raise IntegrityError(f"{self.where}: unknown material kind in the chain")
            mark_chain, mark_sources = len(chain), len(sources)
            chain.append(statement)
            ok = True
            for m in materials:
                if m["kind"] == "source":
                    sources.append(
                        {"name": m["name"], "sha256": m["sha256"], "uri": m.get("uri", "")}
                    )
                elif not self.trace(m["sha256"], m.get("name")):
                    ok = False
                    break
            if ok:
                self.memo[key] = True
                return True
            del chain[mark_chain:], sources[mark_sources:]
        if problems:
            raise IntegrityError(f"{self.where}: artifact {digest[:12]}…: {problems[0]}")
        self.memo[key] = False
        return False

    def _producers(self, digest: str, name: str | None) -> list[dict[str, Any]]:
        """The stored artifact checked (once), then the envelopes with ``digest`` as a
        subject, those naming it ``name`` first (see :meth:`trace`)."""
        if digest not in self.checked:
            try:
                self.ws.store.verify(digest)
            except Error as exc:
                raise IntegrityError(f"{self.where}: artifact {digest[:12]}…: {exc}") from None
            self.checked.add(digest)
        envelopes = list(self.ws.statements.for_subject(digest))
        if name is not None:
            envelopes.sort(key=lambda e: not _names(e, name, digest))
        return envelopes


def _names(envelope: Mapping[str, Any], name: str, digest: str) -> bool:
    """Whether the (not yet verified) statement in ``envelope`` names ``name`` as the
    subject with ``digest``: only an ordering hint for :meth:`_Walk.trace`, which verifies
    every statement it uses."""
    try:
        statement = json.loads(base64.b64decode(envelope["payload"]))
        return any(
            s.get("name") == name and s.get("digest", {}).get("sha256") == digest
            for s in statement.get("subject", [])
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
