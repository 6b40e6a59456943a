"""Search everything a run left behind for a secret or a raw data value.

Every file under a folder is read as bytes, and so is every cell of every table of every
SQLite database there (read through SQLite, so rows still in the WAL count). Base64 runs
(DSSE payloads, encoded details) are decoded and searched too. Blobs in the store are
encrypted, so a plain search is meaningful: a hit is a leak.
"""

from __future__ import annotations

import base64
import binascii
import re
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["leaks", "leaks_in_text"]

_B64 = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")


def _decoded(data: bytes) -> Iterator[bytes]:
    yield data
    for run in _B64.findall(data):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                yield decode(run + b"=" * (-len(run) % 4))
            except (binascii.Error, ValueError):
                continue


def _hits(where: str, data: bytes, needles: list[bytes]) -> list[str]:
    found = []
    for chunk in _decoded(data):
        for needle in needles:
            if needle in chunk:
                found.append(f"{where}: {needle!r}")
    return found


def _cells(db: Path) -> Iterator[tuple[str, bytes]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            rows = con.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names from the schema
            for i, row in enumerate(rows):
                for cell in row:
                    if isinstance(cell, str):
                        yield f"{db.name}:{table}[{i}]", cell.encode()
                    elif isinstance(cell, bytes):
                        yield f"{db.name}:{table}[{i}]", cell
    finally:
        con.close()


def leaks(folder: Path, needles: Iterable[str]) -> list[str]:
    """Where under ``folder`` any of ``needles`` appears (empty when nowhere)."""
    wanted = [n.encode() for n in needles]
    found: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += _hits(str(path.relative_to(folder)), data, wanted)
        if data.startswith(b"SQLite format 3\x00"):
            for where, cell in _cells(path):
                found += _hits(where, cell, wanted)
    return found


def leaks_in_text(text: str, needles: Iterable[str]) -> list[str]:
    """Which of ``needles`` appear in ``text`` (plainly or base64-encoded)."""
    return _hits("text", text.encode(), [n.encode() for n in needles])
