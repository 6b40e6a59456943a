"""ArtifactStore: put and read back, dedup, layout and modes, metadata, export, atomicity,
fail-closed audit, re-wrapping for key rotation, and SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import AuditError, ConfigError, IntegrityError, NotFound, UnknownKeyError
from bastion.security.keys import LocalKeyring
from bastion.store.artifacts import STALE_TEMP_SECONDS, ArtifactRef, ArtifactStore
from bastion.store.blob import read_header
from bastion.store.db import artifacts, make_engine, migrate
from tests.helpers.audit import RecordingLog

from .conftest import SMALL_CHUNK

MIB = 1 << 20


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blob_path(store: ArtifactStore, digest: str) -> Path:
    return store.root / "objects" / digest[:2] / digest


def _rows(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [r.digest for r in conn.execute(sa.select(artifacts.c.digest))]


def _tmp_files(store: ArtifactStore) -> list[str]:
    return sorted(p.name for p in (store.root / "tmp").iterdir())


# -- round trips ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000))
def test_put_then_read_gives_the_same_bytes(data: bytes, module_store: ArtifactStore) -> None:
    ref = module_store.put(data, actor="alice")
    assert ref.digest == _sha(data) and ref.size == len(data)
    assert module_store.read_bytes(ref.digest) == data
    with module_store.open(ref.digest) as reader:
        assert reader.read() == data


@pytest.mark.parametrize(
    "size",
    [0, 1, SMALL_CHUNK - 1, SMALL_CHUNK, SMALL_CHUNK + 1, 5 * SMALL_CHUNK, 2 * MIB + 3],
)
def test_boundary_sizes_round_trip(size: int, store: ArtifactStore) -> None:
    data = os.urandom(size)
    ref = store.put(data, actor="alice")
    assert store.read_bytes(ref.digest) == data
    store.verify(ref.digest)


@pytest.mark.parametrize("size", [4 * MIB, 17 * MIB + 17])
def test_real_one_mib_chunks_round_trip_from_a_path(
    size: int, tmp_path: Path, keyring: LocalKeyring, engine: sa.Engine, sink: RecordingLog
) -> None:
    store = ArtifactStore(tmp_path / "big", keyring, engine, sink)
    source = tmp_path / "source.bin"
    data = os.urandom(size)
    source.write_bytes(data)
    ref = store.put(source, actor="alice", media_type="application/x-parquet", name="big")
    assert ref.digest == _sha(data)
    header = read_header(io.BytesIO(_blob_path(store, ref.digest).read_bytes()), "t")
    assert header.chunk_size == MIB
    dest = tmp_path / "out.bin"
    store.export(ref.digest, dest)
    assert dest.read_bytes() == data


def test_put_accepts_bytes_bytearray_memoryview_paths_and_streams(
    store: ArtifactStore, tmp_path: Path
) -> None:
    data = b"the same bytes, five ways" * 9
    path = tmp_path / "in.bin"
    path.write_bytes(data)

    class ReadOnly:  # a stream with read() and no readinto()
        def __init__(self) -> None:
            self._inner = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._inner.read(min(n, 10))

    sources = [data, bytearray(data), memoryview(data), path, io.BytesIO(data), ReadOnly()]
    refs = {store.put(s, actor="alice").digest for s in sources}  # type: ignore[arg-type]
    assert refs == {_sha(data)}


@pytest.mark.parametrize("source", ["a/path/as/str", io.StringIO("text"), 42])
def test_a_source_that_is_not_bytes_is_a_config_error(store: ArtifactStore, source: object) -> None:
    with pytest.raises(ConfigError, match=r"source: expected bytes, a pathlib\.Path"):
        store.put(source, actor="alice")  # type: ignore[arg-type]


def test_a_missing_source_file_is_a_config_error(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the source"):
        store.put(tmp_path / "absent.bin", actor="alice")


# -- records, dedup, audit ------------------------------------------------------------------


def test_put_records_a_row_and_an_audit_entry(store: ArtifactStore, sink: RecordingLog) -> None:
    ref = store.put(b"model bytes", actor="alice", media_type="application/onnx", name="m.onnx")
    assert ref == store.info(ref.digest)
    assert (ref.size, ref.media_type, ref.name, ref.created_by) == (
        11,
        "application/onnx",
        "m.onnx",
        "alice",
    )
    assert datetime.fromisoformat(ref.created).tzinfo == UTC
    assert sink.recorded == [
        (
            "alice",
            "artifact.put",
            f"artifact:{ref.digest}",
            "ok",
            {"size": 11, "media_type": "application/onnx", "name": "m.onnx", "new": True},
        )
    ]


def test_same_plaintext_is_stored_once_and_the_first_record_kept(
    store: ArtifactStore, sink: RecordingLog, engine: sa.Engine
) -> None:
    first = store.put(b"dataset v1", actor="alice", name="first")
    path = _blob_path(store, first.digest)
    before = (path.read_bytes(), path.stat().st_ino)
    second = store.put(b"dataset v1", actor="bob", name="second")
    assert second == first
    assert (path.read_bytes(), path.stat().st_ino) == before
    assert _rows(engine) == [first.digest]
    assert [e[4]["new"] for e in sink.recorded] == [True, False]
    assert [e[0] for e in sink.recorded] == ["alice", "bob"]
    assert _tmp_files(store) == []


def test_concurrent_puts_of_the_same_bytes_store_one_blob(
    store: ArtifactStore, engine: sa.Engine
) -> None:
    data = os.urandom(5000)
    errors: list[BaseException] = []

    def put() -> None:
        try:
            store.put(data, actor="alice")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert list(store.iter_digests()) == [_sha(data)] == _rows(engine)
    assert _tmp_files(store) == []


def test_info_list_exists_and_iter_digests(store: ArtifactStore) -> None:
    refs = [store.put(bytes([i]) * 100, actor="alice", name=f"a{i}") for i in range(3)]
    assert sorted(store.iter_digests()) == sorted(r.digest for r in refs)
    assert list(store.iter_digests()) == sorted(r.digest for r in refs)
    assert {r.digest for r in store.list()} == {r.digest for r in refs}
    assert all(store.exists(r.digest) for r in refs)
    assert not store.exists("0" * 64)
    (store.root / "objects" / "zz").mkdir()
    (store.root / "objects" / refs[0].digest[:2] / "stray.txt").write_text("x")
    assert len(list(store.iter_digests())) == 3


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("actor", {"actor": ""}),
        ("actor", {"actor": "eve\nforged log line"}),
        ("actor", {"actor": "a" * 129}),
        ("media_type", {"actor": "a", "media_type": "not a media type"}),
        ("media_type", {"actor": "a", "media_type": "text/" + "x" * 200}),
        ("name", {"actor": "a", "name": ""}),
        ("name", {"actor": "a", "name": "x\x00y"}),
    ],
)
def test_bad_metadata_is_a_config_error_naming_the_field(
    store: ArtifactStore, field: str, kwargs: dict[str, str]
) -> None:
    with pytest.raises(ConfigError, match=f"^{field}: expected"):
        store.put(b"data", **kwargs)  # type: ignore[arg-type]
    assert list(store.iter_digests()) == []


@pytest.mark.parametrize("bad", ["A" * 64, "a" * 63, "g" * 64, "../" + "a" * 61, ""])
def test_a_malformed_digest_is_a_config_error_naming_it(store: ArtifactStore, bad: str) -> None:
    for call in (store.open, store.read_bytes, store.verify, store.info, store.exists):
        with pytest.raises(ConfigError, match="digest: expected 64 lowercase hex") as err:
            call(bad)
        assert repr(bad) in str(err.value)
        assert not isinstance(err.value, NotFound)


def test_an_unknown_digest_is_not_found(store: ArtifactStore, tmp_path: Path) -> None:
    digest = _sha(b"never stored")
    for call in (store.open, store.read_bytes, store.verify, store.info):
        with pytest.raises(NotFound, match=digest):
            call(digest)
    with pytest.raises(NotFound):
        store.export(digest, tmp_path / "out")
    with pytest.raises(NotFound):
        store.rewrap(digest, "kek-x")


# -- layout and modes -----------------------------------------------------------------------


def test_objects_are_0600_in_0700_folders(store: ArtifactStore) -> None:
    ref = store.put(b"secret", actor="alice")
    path = _blob_path(store, ref.digest)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (path.parent, store.root / "objects", store.root / "tmp", store.root):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert b"secret" not in path.read_bytes()


def test_chunk_size_out_of_range_is_refused(
    tmp_path: Path, keyring: LocalKeyring, engine: sa.Engine, sink: RecordingLog
) -> None:
    with pytest.raises(ConfigError, match="chunk_size"):
        ArtifactStore(tmp_path / "s", keyring, engine, sink, chunk_size=8)


# -- reading --------------------------------------------------------------------------------


def test_open_gives_a_file_like_reader(store: ArtifactStore) -> None:
    data = b"".join(b"row %d,label\n" % i for i in range(50))
    ref = store.put(data, actor="alice")
    with store.open(ref.digest) as reader:
        assert reader.read(4) == b"row "
        assert next(iter(reader)) == b"0,label\n"
        rest = b"".join(reader)
    assert b"row 0,label\n" + rest == data


def test_export_writes_the_plaintext_atomically(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put(b"weights" * 100, actor="alice")
    dest = tmp_path / "exported.bin"
    store.export(ref.digest, dest)
    assert dest.read_bytes() == b"weights" * 100
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_export_of_a_bad_blob_leaves_no_file_and_keeps_the_old_one(
    store: ArtifactStore, tmp_path: Path
) -> None:
    ref = store.put(b"weights" * 100, actor="alice")
    path = _blob_path(store, ref.digest)
    damaged = bytearray(path.read_bytes())
    damaged[-1] ^= 0x80  # the final chunk's tag: every other chunk still verifies
    path.write_bytes(bytes(damaged))
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "exported.bin"
    with pytest.raises(IntegrityError):
        store.export(ref.digest, dest)
    assert list(out.iterdir()) == []
    dest.write_bytes(b"previous version")
    with pytest.raises(IntegrityError):
        store.export(ref.digest, dest)
    assert list(out.iterdir()) == [dest] and dest.read_bytes() == b"previous version"


def test_export_to_a_folder_or_a_missing_folder_is_a_config_error(
    store: ArtifactStore, tmp_path: Path
) -> None:
    ref = store.put(b"x", actor="alice")
    with pytest.raises(ConfigError, match="is a folder"):
        store.export(ref.digest, tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        store.export(ref.digest, tmp_path / "absent" / "f.bin")


# -- atomicity and fail-closed audit --------------------------------------------------------


class _BrokenStream(io.RawIOBase):
    """A source that dies after ``good`` bytes, like a network read or a killed producer."""

    def __init__(self, good: int) -> None:
        self._left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            raise OSError("connection reset by peer")
        n = min(len(buf), self._left, 100)
        buf[:n] = b"\xab" * n
        self._left -= n
        return n


@pytest.mark.parametrize("good", [0, 1, SMALL_CHUNK, 1000])
def test_a_crash_during_put_leaves_nothing_behind(
    store: ArtifactStore, sink: RecordingLog, engine: sa.Engine, good: int
) -> None:
    with pytest.raises(OSError, match="connection reset"):
        store.put(_BrokenStream(good), actor="alice")  # type: ignore[arg-type]
    assert list(store.iter_digests()) == []
    assert list((store.root / "objects").iterdir()) == []
    assert _tmp_files(store) == []
    assert _rows(engine) == [] and sink.recorded == []


def test_a_crash_during_put_with_big_chunks_leaves_nothing_behind(
    tmp_path: Path, keyring: LocalKeyring, engine: sa.Engine, sink: RecordingLog
) -> None:
    store = ArtifactStore(tmp_path / "big", keyring, engine, sink)

    def chunks() -> Iterator[bytes]:
        yield os.urandom(3 * MIB)
        raise KeyboardInterrupt

    class Stream(io.RawIOBase):
        def __init__(self) -> None:
            self._it = chunks()
            self._buf = b""

        def readable(self) -> bool:
            return True

        def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
            if not self._buf:
                self._buf = next(self._it)
            n = min(len(buf), len(self._buf))
            buf[:n], self._buf = self._buf[:n], self._buf[n:]
            return n

    with pytest.raises(KeyboardInterrupt):
        store.put(Stream(), actor="alice")  # type: ignore[arg-type]
    assert list(store.iter_digests()) == [] and _tmp_files(store) == []
    assert threading.active_count() == 1 or all(
        not t.name.startswith("bastion-sha256") for t in threading.enumerate()
    )


def test_put_is_undone_when_the_audit_log_refuses_it(
    store: ArtifactStore, sink: RecordingLog, engine: sa.Engine
) -> None:
    sink.fail = True
    with pytest.raises(AuditError):
        store.put(b"unaudited", actor="alice")
    assert list(store.iter_digests()) == []
    assert _rows(engine) == [] and _tmp_files(store) == []
    sink.fail = False
    ref = store.put(b"unaudited", actor="alice")
    assert store.read_bytes(ref.digest) == b"unaudited"


def test_a_refused_audit_of_a_repeat_put_keeps_the_existing_artifact(
    store: ArtifactStore, sink: RecordingLog, engine: sa.Engine
) -> None:
    ref = store.put(b"kept", actor="alice")
    sink.fail = True
    with pytest.raises(AuditError):
        store.put(b"kept", actor="bob")
    assert store.read_bytes(ref.digest) == b"kept"
    assert _rows(engine) == [ref.digest]


def test_a_missing_row_is_recorded_again_and_undone_with_the_audit(
    store: ArtifactStore, sink: RecordingLog, engine: sa.Engine
) -> None:
    ref = store.put(b"orphan", actor="alice")
    with engine.begin() as conn:
        conn.execute(artifacts.delete())
    sink.fail = True
    with pytest.raises(AuditError):
        store.put(b"orphan", actor="bob")
    assert _rows(engine) == [] and store.exists(ref.digest)
    sink.fail = False
    again = store.put(b"orphan", actor="bob")
    assert again.created_by == "bob" and sink.recorded[-1][4]["new"] is True


# -- key rotation ---------------------------------------------------------------------------


def test_rewrap_rewrites_only_the_key_slot(store: ArtifactStore, keyring: LocalKeyring) -> None:
    data = os.urandom(1000)
    ref = store.put(data, actor="alice")
    path = _blob_path(store, ref.digest)
    old = path.read_bytes()
    old_header = read_header(io.BytesIO(old), "old")
    new_kek = keyring.add_kek()
    assert store.rewrap(ref.digest, new_kek) is True
    new = path.read_bytes()
    new_header = read_header(io.BytesIO(new), "new")
    assert new_header.kek_id == new_kek and new_header.fixed == old_header.fixed
    assert new[new_header.body_offset :] == old[old_header.body_offset :]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.rewrap(ref.digest, new_kek) is False
    assert store.read_bytes(ref.digest) == data
    assert _tmp_files(store) == []


def test_rotation_then_retirement_keeps_every_artifact_readable(
    store: ArtifactStore, keyring: LocalKeyring
) -> None:
    old_kek = keyring.active_kek()
    refs = [store.put(os.urandom(300 + i), actor="alice") for i in range(3)]
    assert store.key_ids_in_use() == {old_kek: 3}
    new_kek = keyring.add_kek()
    store.put(b"written after rotation", actor="alice")
    assert store.key_ids_in_use() == {new_kek: 1, old_kek: 3}
    assert sum(store.rewrap(d, new_kek) for d in store.iter_digests()) == 3
    assert store.key_ids_in_use() == {new_kek: 4}
    keyring.retire_kek(old_kek, in_use=set(store.key_ids_in_use()))
    for ref in refs:
        store.verify(ref.digest)


def test_rewrap_to_an_unknown_or_malformed_kek_changes_nothing(
    store: ArtifactStore, keyring: LocalKeyring
) -> None:
    ref = store.put(b"stay as you are", actor="alice")
    path = _blob_path(store, ref.digest)
    before = path.read_bytes()
    with pytest.raises(UnknownKeyError):
        store.rewrap(ref.digest, "kek-not-in-the-ring")
    with pytest.raises(ConfigError, match="kek id"):
        store.rewrap(ref.digest, "../../etc")
    assert path.read_bytes() == before and _tmp_files(store) == []


def test_rewrap_refuses_a_blob_whose_key_slot_was_altered(store: ArtifactStore) -> None:
    ref = store.put(b"data", actor="alice")
    path = _blob_path(store, ref.digest)
    blob = bytearray(path.read_bytes())
    blob[-17 - 16 - 5] ^= 1  # inside the wrapped key
    path.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError):
        store.rewrap(ref.digest, "kek-other")


def test_key_ids_in_use_refuses_to_guess_past_a_damaged_header(store: ArtifactStore) -> None:
    ref = store.put(b"data", actor="alice")
    path = _blob_path(store, ref.digest)
    path.write_bytes(b"XXXX" + path.read_bytes()[4:])
    with pytest.raises(IntegrityError, match="bad magic"):
        store.key_ids_in_use()


# -- both databases -------------------------------------------------------------------------


def test_metadata_works_on_sqlite_and_postgresql(
    database_url: str, tmp_path: Path, keyring: LocalKeyring
) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with RecordingLog(engine, keyring) as sink:
            store = ArtifactStore(tmp_path / "s", keyring, engine, sink, chunk_size=SMALL_CHUNK)
            a = store.put(b"alpha", actor="alice", name=None)
            b = store.put(b"beta", actor="bob", name="b", media_type="text/csv")
            assert store.put(b"alpha", actor="carol", name="other") == a
            info = store.info(b.digest)
            assert info == ArtifactRef(b.digest, 4, "text/csv", "b", b.created, "bob")
            assert {r.digest for r in store.list()} == {a.digest, b.digest}
            assert a.name is None and store.info(a.digest).name is None
            sink.fail = True
            with pytest.raises(AuditError):
                store.put(b"gamma", actor="alice")
            sink.fail = False
            assert len(store.list()) == 2
            assert [e[2] for e in sink.recorded] == [
                f"artifact:{d}" for d in (a.digest, b.digest, a.digest)
            ]
    finally:
        engine.dispose()


def test_stale_temp_files_of_a_killed_put_are_swept_on_open(
    tmp_path: Path, keyring: LocalKeyring, engine: sa.Engine, sink: RecordingLog
) -> None:
    store = ArtifactStore(tmp_path / "s", keyring, engine, sink, chunk_size=SMALL_CHUNK)
    stale = store.root / "tmp" / ".tmp-dead.blob"
    fresh = store.root / "tmp" / ".tmp-running.blob"
    stale.write_bytes(b"half a blob")
    fresh.write_bytes(b"a put still running elsewhere")
    old = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    ArtifactStore(tmp_path / "s", keyring, engine, sink, chunk_size=SMALL_CHUNK)
    assert not stale.exists()
    assert fresh.exists()
