"""The artifact store: encrypted, content-addressed, written atomically, verified on read.

Layout under ``root`` (folders 0700, files 0600)::

    objects/ab/<sha256 hex>   one blob per artifact, named by its plaintext's SHA-256
    tmp/                      blobs being written; renamed into objects/ once complete
    store.lock                held while an object is committed, undone or re-wrapped

Each blob is encrypted under its own data key (format in :mod:`bastion.store.blob` and
docs/formats/artifact.md). :meth:`ArtifactStore.put` streams the source into a temporary
blob (reading and encrypting, hashing, and writing on three threads; the kernel is asked
to write back every 16 MiB so the final fsync is short), fsyncs it, then, holding the lock,
renames it into place unless that digest is already stored (dedup: the existing file is
kept), fsyncs the folder, records a row in the ``artifacts`` table if absent and writes the
audit entry, and the row and its audit entry commit in one transaction (``record_in``).
If the database or the audit log fails, the transaction rolls back, the new blob file is
removed and the error re-raised: an artifact that was not audited does not exist. A crash
between the blob's rename and the commit leaves an unrecorded blob, which ``bastion verify``
reports and the next put of the same bytes adopts.

Every read (:meth:`~ArtifactStore.open`, :meth:`~ArtifactStore.read_bytes`,
:meth:`~ArtifactStore.export`, :meth:`~ArtifactStore.verify`) checks each chunk and that the
plaintext hashes to the digest asked for, so a blob replayed under another name is refused.
The blobs are the truth; the table is an index for listing and metadata. Each row carries a
MAC (:mod:`bastion.security.rows`), set on insert and checked by :meth:`ArtifactStore.info`
and by ``bastion verify``: edited metadata is reported, never believed.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Connection, Engine, LargeBinary, String, exists, literal, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from bastion._fs import file_lock, fsync_dir, write_all
from bastion.errors import ConfigError, NotFound
from bastion.security.keys import KeyProvider
from bastion.security.rows import RowMac
from bastion.security.sink import AuditSink
from bastion.store._files import Source, WritebackFile, open_source, scratch_file
from bastion.store.blob import (
    DEFAULT_CHUNK_SIZE,
    BlobReader,
    check_chunk_size,
    check_kek_id,
    read_header,
    rewrap_slot,
    write_blob,
)
from bastion.store.db import artifacts

__all__ = ["STALE_TEMP_SECONDS", "ArtifactRef", "ArtifactStore", "Source"]

STALE_TEMP_SECONDS = 3600  # a temp blob untouched this long belongs to a dead process

_DIGEST = re.compile(r"[0-9a-f]{64}")
_FANOUT = re.compile(r"[0-9a-f]{2}")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_COPY_BUFFER = 1 << 20


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """What the store records about an artifact. ``digest`` is SHA-256 of the plaintext."""

    digest: str
    size: int
    media_type: str
    name: str | None
    created: str  # ISO-8601 UTC
    created_by: str


def _fields(ref: ArtifactRef) -> tuple[Any, ...]:
    return (ref.digest, ref.size, ref.media_type, ref.name, ref.created, ref.created_by)


def _check_digest(digest: object) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        shown = str(digest)[:80]
        raise ConfigError(f"digest: expected 64 lowercase hex characters, got {shown!r}")
    return digest


def _check_text(field: str, value: object, limit: int) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= limit or _CONTROL.search(value):
        shown = str(value)[:80]
        raise ConfigError(
            f"{field}: expected 1..{limit} characters without control characters, got {shown!r}"
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ArtifactStore:
    """Encrypted, content-addressed artifacts under ``root``, indexed in ``engine``.

    ``keys`` wraps each blob's data key (new blobs under its active KEK); ``audit`` records
    every put, and a put it cannot record is undone. ``chunk_size`` (bytes of plaintext per
    chunk, 16 B..64 MiB) applies to new blobs; any stored size is read.
    """

    def __init__(
        self,
        root: Path,
        keys: KeyProvider,
        engine: Engine,
        audit: AuditSink,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        check_chunk_size(chunk_size)
        self.root = root
        self._objects = root / "objects"
        self._tmp = root / "tmp"
        self._lock = root / "store.lock"
        self._keys = keys
        self._rows = RowMac.of(keys)
        self._engine = engine
        self._audit = audit
        self._chunk_size = chunk_size
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in (self._objects, self._tmp):
            folder.mkdir(mode=0o700, exist_ok=True)
        self._sweep_stale_temp_files()

    def _sweep_stale_temp_files(self) -> None:
        """Remove half-written blobs a killed process left behind (older than an hour, so a
        put still running in another process is never touched). They were never readable:
        only a complete, fsynced blob is ever renamed into ``objects/``."""
        cutoff = time.time() - STALE_TEMP_SECONDS
        for leftover in self._tmp.glob(".tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def _path(self, digest: str) -> Path:
        return self._objects / digest[:2] / digest

    # -- writing ----------------------------------------------------------------------

    def put(
        self,
        source: Source,
        *,
        actor: str,
        media_type: str = "application/octet-stream",
        name: str | None = None,
    ) -> ArtifactRef:
        """Store ``source`` (bytes, a file path or a binary stream) and return its record.

        Idempotent: the same plaintext gives the same digest; if that digest is already
        recorded, its first record (name, media type, creation) is returned unchanged.
        """
        _check_text("actor", actor, 128)
        if (
            not isinstance(media_type, str)
            or len(media_type) > 128
            or not _MEDIA_TYPE.fullmatch(media_type)
        ):
            shown = str(media_type)[:80]
            raise ConfigError(
                f"media_type: expected type/subtype of 1..128 characters, got {shown!r}"
            )
        if name is not None:
            _check_text("name", name, 256)
        with open_source(source) as src, scratch_file(self._tmp, ".blob") as (out, tmp):
            digest, size = write_blob(
                src, WritebackFile(out), self._keys, chunk_size=self._chunk_size
            )
            os.fsync(out.fileno())
            with file_lock(self._lock):
                return self._commit(tmp, ArtifactRef(digest, size, media_type, name, _now(), actor))

    def _commit(self, tmp: Path, ref: ArtifactRef) -> ArtifactRef:
        """Move a complete blob into place, record it and audit it; undo on any failure.
        The caller holds the store lock."""
        final = self._path(ref.digest)
        blob_created = row_created = False
        try:
            if not final.exists():
                if not final.parent.is_dir():
                    final.parent.mkdir(mode=0o700, exist_ok=True)
                    fsync_dir(self._objects)
                os.replace(tmp, final)
                blob_created = True
                fsync_dir(final.parent)
            # the row and its audit entry commit in one transaction: both or neither
            with self._engine.begin() as conn:
                row_created = self._insert_if_absent(conn, ref)
                stored = ref if row_created else self._info(conn, ref.digest, self._rows)
                details: dict[str, Any] = {
                    "size": stored.size,
                    "media_type": stored.media_type,
                    "name": stored.name,
                    "new": blob_created or row_created,
                }
                self._audit.record_in(
                    conn, ref.created_by, "artifact.put", f"artifact:{ref.digest}", "ok", details
                )
        except BaseException:
            if blob_created:
                final.unlink()
                fsync_dir(final.parent)
            raise
        return stored

    def _insert_if_absent(self, conn: Connection, ref: ArtifactRef) -> bool:
        """INSERT ... SELECT ... WHERE NOT EXISTS ... RETURNING: the same SQL on SQLite
        (3.35+) and PostgreSQL; a row comes back only if this call inserted it."""
        columns = ["digest", "size", "media_type", "name", "created", "created_by"]
        mac = self._rows.mac("artifacts", dict(zip(columns, _fields(ref), strict=True)))
        row = select(
            literal(ref.digest, String(64)),
            literal(ref.size, BigInteger()),
            literal(ref.media_type, String(128)),
            literal(ref.name, String(256)),
            literal(ref.created, String(40)),
            literal(ref.created_by, String(128)),
            literal(mac, LargeBinary(32)),
        ).where(~exists().where(artifacts.c.digest == ref.digest))
        columns.append("mac")
        stmt = artifacts.insert().from_select(columns, row).returning(artifacts.c.digest)
        if conn.dialect.name == "sqlite":  # one writer at a time: the check cannot race
            return conn.execute(stmt).first() is not None
        try:  # PostgreSQL: a savepoint, so a lost race does not abort the transaction
            with conn.begin_nested():
                inserted = conn.execute(stmt).first()
        except SQLIntegrityError:  # another writer inserted it between check and insert
            return False
        return inserted is not None

    def rewrap(self, digest: str, kek_id: str) -> bool:
        """Re-wrap a blob's data key under ``kek_id``, rewriting only the key slot.

        The chunks are copied byte for byte, never decrypted; the old slot is verified
        first. Atomic (temp file, fsync, rename, folder fsync). False if already under it.
        """
        _check_digest(digest)
        check_kek_id(kek_id)
        path, where = self._path(digest), f"artifact {digest}"
        with file_lock(self._lock):
            try:
                src = open(path, "rb")  # noqa: SIM115 - closed by the with below
            except FileNotFoundError:
                raise NotFound(f"{where}: not in the store") from None
            with src:
                header = read_header(src, where)
                if header.kek_id == kek_id:
                    return False
                prefix = rewrap_slot(header, self._keys, kek_id, where)
                with scratch_file(self._tmp, ".blob") as (out, tmp):
                    write_all(out, prefix)
                    shutil.copyfileobj(src, out, _COPY_BUFFER)
                    os.fsync(out.fileno())
                    os.replace(tmp, path)
            fsync_dir(path.parent)
        return True

    # -- reading ----------------------------------------------------------------------

    def open(self, digest: str) -> BlobReader:
        """A file-like reader of the plaintext that verifies as it goes.

        Header, key slot and commitment are checked here; each chunk when reached; the
        digest on the final chunk, before its bytes are returned. Use it in a ``with``.
        """
        _check_digest(digest)
        try:
            fh = open(self._path(digest), "rb", buffering=0)  # noqa: SIM115 - owned by the reader
        except FileNotFoundError:
            raise NotFound(f"artifact {digest}: not in the store") from None
        return BlobReader(fh, self._keys, where=f"artifact {digest}", expected_digest=digest)

    def read_bytes(self, digest: str) -> bytes:
        """The whole plaintext, returned only once it has been fully verified."""
        buf = io.BytesIO()
        with self.open(digest) as reader:
            for chunk in reader.chunks():
                buf.write(chunk)
        return buf.getvalue()

    def export(self, digest: str, dest: Path) -> None:
        """Decrypt to ``dest`` (mode 0600) atomically: a blob that fails verification
        leaves no ``dest`` and no partial file."""
        folder = dest.parent
        if dest.is_dir():
            raise ConfigError(f"{dest}: is a folder, expected a file path")
        if not folder.is_dir():
            raise ConfigError(f"{dest}: folder {folder} does not exist")
        with self.open(digest) as reader, scratch_file(folder, ".part") as (out, tmp):
            sink = WritebackFile(out)
            for chunk in reader.chunks():
                write_all(sink, chunk)
            os.fsync(out.fileno())
            os.replace(tmp, dest)
        fsync_dir(folder)

    def verify(self, digest: str) -> None:
        """Decrypt and check the whole blob; raise IntegrityError (or NotFound) on failure."""
        with self.open(digest) as reader:
            for _chunk in reader.chunks():
                pass

    # -- metadata and listing ---------------------------------------------------------

    def exists(self, digest: str) -> bool:
        """Whether a blob for ``digest`` is in the objects folder (it is not verified)."""
        return self._path(_check_digest(digest)).is_file()

    def info(self, digest: str) -> ArtifactRef:
        """The recorded metadata of an artifact; ForgedRow if its row fails its MAC."""
        _check_digest(digest)
        with self._engine.connect() as conn:
            return self._info(conn, digest, self._rows)

    @staticmethod
    def _info(conn: Connection, digest: str, rows: RowMac) -> ArtifactRef:
        row = conn.execute(select(artifacts).where(artifacts.c.digest == digest)).first()
        if row is None:
            raise NotFound(f"artifact {digest}: not recorded in the store")
        rows.check("artifacts", row._mapping)
        return ArtifactRef(
            row.digest, row.size, row.media_type, row.name, row.created, row.created_by
        )

    def list(self) -> builtins.list[ArtifactRef]:
        """Every recorded artifact, oldest first."""
        query = select(artifacts).order_by(artifacts.c.created, artifacts.c.digest)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            ArtifactRef(r.digest, r.size, r.media_type, r.name, r.created, r.created_by)
            for r in rows
        ]

    def iter_digests(self) -> Iterator[str]:
        """Digests of the blobs in the objects folder, sorted (stray names are skipped)."""
        for folder in sorted(self._objects.iterdir()):
            if not (_FANOUT.fullmatch(folder.name) and folder.is_dir()):
                continue
            for entry in sorted(folder.iterdir()):
                if _DIGEST.fullmatch(entry.name) and entry.name[:2] == folder.name:
                    yield entry.name

    def key_ids_in_use(self) -> dict[str, int]:
        """KEK id → number of blobs wrapped under it, read from the blobs' key slots.

        A blob whose header does not parse raises IntegrityError: a key is never declared
        unused because a blob could not be read.
        """
        counts: dict[str, int] = {}
        for digest in self.iter_digests():
            with open(self._path(digest), "rb") as fh:
                kek_id = read_header(fh, f"artifact {digest}").kek_id
            counts[kek_id] = counts.get(kek_id, 0) + 1
        return dict(sorted(counts.items()))
