"""A file source of the ingest stage (see :mod:`bastion.stages.ingest`): its path against the
pipeline file's folder (:func:`resolve`), its bytes read once into memory while hashed, a
FIFO or device refused (:func:`read_pinned_bytes`), and those same bytes parsed as CSV or
Parquet (:func:`parse_file`), so the file cannot change between hashing and parsing."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bastion.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from bastion.spec.config import SourceConfig

__all__ = ["parse_file", "read_pinned_bytes", "resolve"]

_CHUNK = 1 << 20


def resolve(base_dir: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(base_dir) / p


def read_pinned_bytes(name: str, path: Path) -> tuple[io.BytesIO, str]:
    """Read the file once, hashing the same chunks that fill the buffer."""
    try:  # O_NONBLOCK: opening a FIFO must not hang; fstat then refuses it
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ConfigError(f"source {name!r}: file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"source {name!r}: cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"source {name!r}: not a regular file: {path}")
        digest = hashlib.sha256()
        buf = io.BytesIO()
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            buf.write(chunk)
    buf.seek(0)
    return buf, digest.hexdigest()


def parse_file(name: str, src: SourceConfig, data: io.BytesIO) -> pd.DataFrame:
    """Parse the pinned bytes; bad input (empty, header only, wrong delimiter, ragged rows,
    undecodable bytes, not Parquet) is a DataError naming the line (see ``stream``)."""
    from bastion.io.stream import read_frame

    fmt: Literal["csv", "parquet"] = "parquet" if src.format == "parquet" else "csv"
    shown = f"source {name!r}: cannot read the {fmt} file {src.path}"
    return read_frame(data, shown=shown, format=fmt, csv=src.csv)
