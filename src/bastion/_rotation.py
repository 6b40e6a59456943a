"""``bastion keys rotate``: a new KEK, every blob's data key re-wrapped, unused KEKs retired.

:func:`rotate` is crash-safe at every step: the keyring is replaced atomically and keeps
every KEK that any blob still names; each blob's key slot is rewritten with an atomic
rename; a KEK is retired (its material erased) only after the blob headers show that
nothing uses it. Rerunning after a crash finishes the job. It runs under the home's
``lock`` and is audited (``keys.rotate`` started, then ok with what it did).

:meth:`bastion.workspace.Workspace.rotate_keys` is the public entry: it authorizes
``keys:rotate`` and passes the principal as the actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bastion._fs import file_lock

if TYPE_CHECKING:
    from bastion.workspace import Progress, Workspace

__all__ = ["RotationReport", "rotate"]


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What ``bastion keys rotate`` did."""

    new_kek: str
    rewrapped: int
    retired: list[str]
    new_signing_key: str | None
    new_pseudonym_key: str | None = None


def rotate(
    ws: Workspace,
    actor: str,
    *,
    signing: bool = False,
    pseudonym: bool = False,
    progress: Progress | None = None,
) -> RotationReport:
    """Rotate ``ws``'s keys as ``actor`` (see the module docstring); ``signing`` also
    replaces the signing key, ``pseudonym`` the pseudonym key. Checks no permission."""
    step = progress or (lambda _s, _d, _t: None)
    keyring, store = ws.keyring, ws.store
    with file_lock(ws.home / "lock"):
        ws.audit.record(
            actor,
            "keys.rotate",
            "keyring",
            "started",
            {"signing": signing, "pseudonym": pseudonym},
        )
        new_kek = keyring.add_kek()
        step("kek-created", 0, 0)
        new_sig = keyring.add_signing_key() if signing else None
        if new_sig:
            step("signing-key-created", 0, 0)
        new_psk = keyring.add_pseudonym_key() if pseudonym else None
        if new_psk:
            step("pseudonym-key-created", 0, 0)
        digests = sorted(store.iter_digests())
        rewrapped = 0
        for done, digest in enumerate(digests, 1):
            if store.rewrap(digest, new_kek):
                rewrapped += 1
            step("rewrapped", done, len(digests))
        in_use = set(store.key_ids_in_use())
        retired = []
        for info in keyring.keys():
            if info.kind == "kek" and info.state == "decrypt-only" and info.id not in in_use:
                keyring.retire_kek(info.id, in_use=in_use)
                retired.append(info.id)
                step("retired", len(retired), 0)
        ws.audit.record(
            actor,
            "keys.rotate",
            "keyring",
            "ok",
            {
                "new_kek": new_kek,
                "rewrapped": rewrapped,
                "retired": retired,
                "new_signing_key": new_sig,
                "new_pseudonym_key": new_psk,
            },
        )
        if new_sig:
            ws.audit.checkpoint()  # the first checkpoint under the new signing key
    return RotationReport(new_kek, rewrapped, retired, new_sig, new_psk)
