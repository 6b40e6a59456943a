"""The audit log's anchor: its newest signed tree head, sealed in a file outside the database.

Whoever can write the database but lacks the passphrase can delete checkpoint rows, erase
entries and recompute every chain value and the head: the rows alone then describe a
shorter or different history that checks. The anchor is the writer's memory of how far the
log reached and what it said, kept where that rewrite does not reach it: the file
``audit-anchor.json`` beside the keyring in the home, signed with the keyring's active
signing key (which only the passphrase unlocks)::

    message   = "bastion audit anchor v1\\n" ‖ decimal(tree_size) ‖ "\\n" ‖ hex(root) ‖ "\\n"
                ‖ decimal(checkpoints) ‖ "\\n" ‖ ts ‖ "\\n" ‖ key_id ‖ "\\n"
    signature = Ed25519(signing key named key_id, message)

``tree_size`` entries hash to the RFC 6962 ``root`` (``SHA-256("")`` for the empty log of a
new home), and ``checkpoints`` checkpoint rows had been stored with a tree size of at most
``tree_size``. The writer replaces the file atomically (temporary file, fsync, rename,
folder fsync) after every commit that signs a checkpoint (every ``checkpoint_every``
entries, and each ``AuditLog.checkpoint()``), and when the log is closed; never with a
smaller tree size than the file already holds (the replacement runs under
``audit-anchor.json.lock``). ``AuditLog.verify`` requires the file, and the writer refuses
to append to, or sign, a log that does not extend it.

The window that remains (also in ``docs/formats/checkpoint.md``):

* Entries appended after the newest anchor can be erased or rewritten without a trace in
  the home: at most the entries since the last checkpoint of a process still running (fewer
  than ``checkpoint_every``), or of one that died without closing the log.
* A signed anchor cannot be forged, but an older genuine copy can be put back (rolled back).
  Whoever does so can then erase or rewrite everything after that copy's tree size. Nothing
  in the home bounds how old the copy may be: the attacker needs only to have kept one (read
  access to the home at that time is enough). An attacker who first gets at the home at
  time T can roll back no further than the anchor of time T, so entries anchored before
  then stay protected. Only a checkpoint exported off the home (``bastion audit checkpoint
  --export``, checked with ``bastion audit verify --checkpoint``) or kept by a witness
  bounds a rollback.

Homes made before the anchor existed have no file, and their keyring lacks
``audit_anchored``. On the first open with the passphrase,
:func:`~bastion.security.audit.adopt_anchor` adopts one, trust on first use as row MACs do
(:func:`bastion.security.rows.seal_missing`): it appends
an ``audit.anchored`` entry (the entry count it found), signs a checkpoint at the head (the
rows must still chain up from the newest stored checkpoint, or nothing is adopted and the
open fails) and seals that tree head; the workspace then records ``audit_anchored`` in the
keyring, under the keyring's MAC. From then on a missing anchor is an attack, never an old
home: the writer refuses to append and ``verify`` reports it. A keyring without the flag
next to an anchor file (a home made by the release that added anchors, or an adoption cut
short before the flag was saved) keeps its file and only gains the flag. An upgrade trusts
the log it finds once, as the previous version did: a history rewritten before that first
open is anchored with the rest.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bastion._fs import atomic_write, file_lock
from bastion.errors import ConfigError, Error, IntegrityError
from bastion.security.keys import KeyProvider, verify_ed25519

__all__ = [
    "ANCHOR_FILE",
    "ANCHOR_FORMAT",
    "Anchor",
    "AnchorKeeper",
    "read_anchor",
    "sign_anchor",
]

ANCHOR_FILE: Final = "audit-anchor.json"
ANCHOR_FORMAT: Final = "bastion-audit-anchor"
_VERSION = 1
_CONTEXT = b"bastion audit anchor v1\n"
_MAX_FILE = 65_536
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Anchor:
    """A signed tree head of the first ``tree_size`` entries, plus the checkpoint count."""

    tree_size: int
    root: bytes
    checkpoints: int
    ts: str
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        """The exact bytes the signature covers."""
        text = (
            f"{self.tree_size}\n{self.root.hex()}\n{self.checkpoints}\n{self.ts}\n{self.key_id}\n"
        )
        return _CONTEXT + text.encode()

    def verify(self, keys: KeyProvider) -> None:
        """Raise UnknownKeyError or SignatureError unless a keyring key signed this."""
        verify_ed25519(keys.public_key(self.key_id), self.signature, self.message())

    def to_json(self) -> bytes:
        """The file's bytes: sorted keys, two-space indent, trailing newline."""
        doc = {
            "format": ANCHOR_FORMAT,
            "version": _VERSION,
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "checkpoints": self.checkpoints,
            "ts": self.ts,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def sign_anchor(keys: KeyProvider, tree_size: int, root: bytes, checkpoints: int) -> Anchor:
    """An anchor for ``tree_size`` entries with Merkle root ``root``, signed now."""
    key_id = keys.active_signing_key()
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    draft = Anchor(tree_size, root, checkpoints, ts, key_id, b"")
    return Anchor(tree_size, root, checkpoints, ts, key_id, keys.sign(key_id, draft.message()))


def read_anchor(path: Path, keys: KeyProvider) -> Anchor:
    """The anchor in ``path`` once its signature checks.

    Raises IntegrityError when the file is missing or is not an anchor, UnknownKeyError
    when its key id is not in the keyring, SignatureError when the signature fails.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(f"{path}: the audit anchor is missing (deleted)") from None
    except OSError as exc:
        raise IntegrityError(f"{path}: cannot read the audit anchor ({exc.strerror})") from None
    anchor = _parse(path, raw)
    anchor.verify(keys)
    return anchor


def _parse(path: Path, raw: bytes) -> Anchor:
    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"{path}: not a {ANCHOR_FORMAT} v{_VERSION} file: {why}")

    if len(raw) > _MAX_FILE:
        raise bad(f"larger than {_MAX_FILE} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad("invalid JSON") from None
    expected = {"format", "version", "tree_size", "root", "checkpoints", "ts", "key_id"}
    if not isinstance(doc, dict) or set(doc) != expected | {"signature"}:
        raise bad(f"expected exactly the keys {sorted(expected | {'signature'})}")
    if doc["format"] != ANCHOR_FORMAT or doc["version"] != _VERSION:
        raise bad(f"format {doc['format']!r} version {doc['version']!r}")
    size, count, root = doc["tree_size"], doc["checkpoints"], doc["root"]
    for name, value in (("tree_size", size), ("checkpoints", count)):
        if type(value) is not int or value < 0:
            raise bad(f"{name} must be a non-negative integer")
    if not isinstance(root, str) or not re.fullmatch(r"[0-9a-f]{64}", root):
        raise bad("root must be 64 lowercase hex digits")
    for name in ("ts", "key_id"):
        value = doc[name]
        if not isinstance(value, str) or not 0 < len(value) <= 64 or _CONTROL.search(value):
            raise bad(f"{name} must be 1..64 printable characters")
    try:
        sig = doc["signature"]
        signature = base64.b64decode(sig, validate=True) if isinstance(sig, str) else b""
    except binascii.Error:
        signature = b""
    if len(signature) != 64:
        raise bad("signature must be 64 bytes in base64")
    return Anchor(size, bytes.fromhex(root), count, doc["ts"], doc["key_id"], signature)


class AnchorKeeper:
    """Reads the anchor file and replaces it: at once (:meth:`seal`) or in the background.

    :meth:`submit` hands the newest tree head to one background thread, so that the
    writer's commits never wait for the file's two fsyncs; a newer submission replaces one
    not yet written. :meth:`close` writes what is pending and stops the thread.
    """

    def __init__(self, path: Path, keys: KeyProvider) -> None:
        self.path = path
        self._keys = keys
        self._lock_path = path.with_name(path.name + ".lock")
        self._cond = threading.Condition()
        self._pending: tuple[int, bytes, int] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.size = -1  # the largest tree size this process read or wrote; -1: none yet

    def load(self) -> Anchor:
        """The anchor as the file holds it now (see :func:`read_anchor`)."""
        anchor = read_anchor(self.path, self._keys)
        self.size = max(self.size, anchor.tree_size)
        return anchor

    def create(self) -> Anchor:
        """Seal the anchor of an empty log; ConfigError if the file already exists."""
        if self.path.exists():
            raise ConfigError(f"{self.path}: an audit anchor already exists")
        from bastion.security.merkle import EMPTY_ROOT

        return self.seal(0, EMPTY_ROOT, 0)

    def seal(self, tree_size: int, root: bytes, checkpoints: int) -> Anchor:
        """Sign and write an anchor now, unless the file already reaches as far.

        Returns the anchor the file holds afterwards.
        """
        with file_lock(self._lock_path):
            with contextlib.suppress(Error):
                current = read_anchor(self.path, self._keys)
                if current.tree_size >= tree_size:
                    self.size = max(self.size, current.tree_size)
                    return current
            anchor = sign_anchor(self._keys, tree_size, root, checkpoints)
            atomic_write(self.path, anchor.to_json())
        self.size = max(self.size, tree_size)
        return anchor

    def submit(self, tree_size: int, root: bytes, checkpoints: int) -> None:
        """Have the background thread :meth:`seal` this tree head soon."""
        with self._cond:
            if self._stopping:
                return
            if self._pending is None or self._pending[0] < tree_size:
                self._pending = (tree_size, root, checkpoints)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="bastion-audit-anchor", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        """Write what is pending and stop the background thread."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                pending, self._pending = self._pending, None
                if pending is None:
                    return
            # A failed write leaves the older anchor in place: the next checkpoint or the
            # close retries, and until then the window is wider, never the log wrong.
            with contextlib.suppress(Error, OSError):
                self.seal(*pending)
