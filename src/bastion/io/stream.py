"""Data files: read whole with clear errors, or streamed in chunks in constant memory.

- :func:`read_table` reads a CSV or Parquet file into one DataFrame. CSV is read as
  ingest reads it: every column as text (pandas ``str``), only an empty field and
  ``csv.na_values`` as null, typing left to validation. Bad input is a one-line
  :class:`~bastion.errors.DataError` (exit code 2) naming the file and, where there is
  one, the line: an empty file; a header and no data rows; a header that is one column
  holding another delimiter (``, ; |`` or tab: the file says which delimiter it looks like
  and how to set it); a row with more fields than the header (``line 17: expected 15
  fields, found 16``; a row with *fewer* fields is read with the missing ones null, as
  pandas does, and validation reports them); bytes that are not valid in the encoding
  (line and byte offset); a file over ``memory_budget``. NaN, infinities and values of the
  wrong type are data, not errors: they are read as they are and
  :func:`~bastion.stages.validate.validate_table` reports each by row and column.
- :func:`iter_chunks` yields the same frames ``chunk_rows`` rows at a time (pandas'
  chunked C parser for CSV; ``ParquetFile.iter_batches`` for Parquet, which holds one row
  group's compressed column chunks at a time), each indexed by its row numbers in the
  whole file.
  (:func:`bastion.stages.file_check.check_file` checks a file chunk by chunk.)

The memory a whole read needs is estimated before it starts (:func:`estimate_memory`):
CSV, the file's size plus 24 bytes per cell (an 8-byte offset per text value, then the
typed copy and the masks that validation makes), the cells counted from the first MiB;
Parquet, its uncompressed size from the footer plus 16 bytes per cell.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

import pandas as pd

from bastion.errors import ConfigError, DataError
from bastion.spec.config import CsvOptions

__all__ = [
    "Format",
    "estimate_memory",
    "iter_chunks",
    "read_frame",
    "read_table",
]

Format = Literal["csv", "parquet"]

_SAMPLE = 1 << 20
_CSV_CELL_BYTES = 24
_PARQUET_CELL_BYTES = 16
_DELIMITERS = {",": "comma", ";": "semicolon", "|": "pipe", "\t": "tab"}
_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_SHOWN = 60


def read_table(
    path: Path,
    *,
    format: Format,
    csv: CsvOptions | None = None,
    memory_budget: int | None = None,
) -> pd.DataFrame:
    """Read ``path`` whole; DataError for bad input or a file over ``memory_budget`` bytes."""
    path = Path(path)
    size = _size(path)
    if memory_budget is not None:
        need = estimate_memory(path, format=format, csv=csv)
        if need > memory_budget:
            raise DataError(
                f"{path} is {_bytes(size)} on disk, about {_bytes(need)} in memory, over the"
                f" memory budget of {_bytes(memory_budget)}: check it with check_file"
                " (bastion.stages.file_check), which streams it in chunks"
            )
    with open(path, "rb") as fh:
        return read_frame(fh, shown=str(path), format=format, csv=csv)


def iter_chunks(
    path: Path,
    *,
    format: Format,
    csv: CsvOptions | None = None,
    chunk_rows: int = 200_000,
) -> Iterator[pd.DataFrame]:
    """Yield ``path`` ``chunk_rows`` rows at a time, indexed by row number in the file."""
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows: expected a positive number, got {chunk_rows}")
    path = Path(path)
    _size(path)
    return _chunks(path, format, csv, chunk_rows)


def _chunks(
    path: Path, format: Format, csv: CsvOptions | None, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    shown = str(path)
    start = 0
    with open(path, "rb") as fh:
        if format == "parquet":
            chunks = _parquet_chunks(fh, shown, chunk_rows)
        else:
            chunks = _csv_chunks(fh, shown, csv or CsvOptions(), chunk_rows)
        for chunk in chunks:
            chunk.index = pd.RangeIndex(start, start + len(chunk))
            start += len(chunk)
            yield chunk


def estimate_memory(path: Path, *, format: Format, csv: CsvOptions | None = None) -> int:
    """Bytes a whole read and validation of ``path`` needs, roughly (module docstring)."""
    path = Path(path)
    size = _size(path)
    if format == "parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path).metadata
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a Parquet file: {_first_line(exc)}") from None
        raw = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        return int(raw + meta.num_rows * meta.num_columns * _PARQUET_CELL_BYTES)
    opts = csv or CsvOptions()
    try:
        codecs.lookup(opts.encoding)
    except LookupError:
        raise ConfigError(f"{path}: unknown encoding {opts.encoding!r}") from None
    with open(path, "rb") as fh:
        sample = fh.read(_SAMPLE)
    lines = max(sample.count(b"\n"), 1)
    text = sample.decode(opts.encoding, errors="replace").split("\n", 1)[0]
    columns = max(text.count(opts.delimiter) + 1, 1)
    rows = size * lines / max(len(sample), 1)
    return int(size + rows * columns * _CSV_CELL_BYTES)


# -- reading -------------------------------------------------------------------------------


def _size(path: Path) -> int:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot open {path}: {exc.strerror}") from None
    if not path.is_file():
        raise ConfigError(f"not a regular file: {path}")
    if st.st_size == 0:
        raise DataError(f"{path}: empty file: expected a header line and data rows")
    return st.st_size


def read_frame(
    fh: IO[bytes], *, shown: str, format: Format, csv: CsvOptions | None
) -> pd.DataFrame:
    """Parse an open binary file whole; errors start with ``shown``."""
    start = fh.tell()
    if not fh.read(1):
        raise DataError(f"{shown}: empty file: expected a header line and data rows")
    fh.seek(start)
    if format == "parquet":
        _parquet_file(fh, shown)
        fh.seek(start)
        try:
            return pd.read_parquet(fh, engine="pyarrow")
        except (ValueError, OSError) as exc:  # ArrowInvalid is a ValueError
            raise DataError(f"{shown}: cannot read the Parquet file: {_first_line(exc)}") from None
    frames = _csv_chunks(fh, shown, csv or CsvOptions(), None)
    try:
        return next(frames)
    finally:
        frames.close()


def _csv_kwargs(opts: CsvOptions) -> dict[str, Any]:
    return {
        "sep": opts.delimiter,
        "skipinitialspace": opts.skip_initial_space,
        "encoding": opts.encoding,
        "dtype": str,
        "keep_default_na": False,
        "na_values": ["", *opts.na_values],
        "engine": "c",
    }


def _csv_chunks(
    fh: IO[bytes], shown: str, opts: CsvOptions, chunk_rows: int | None
) -> Generator[pd.DataFrame, None, None]:
    """The probe (empty, header only, delimiter, first row), then the frame or its chunks."""
    start = fh.tell()
    kwargs = _csv_kwargs(opts)
    with _csv_errors(fh, start, shown, opts):
        probe = pd.read_csv(fh, header=None, nrows=2, **kwargs)
    _check_delimiter(probe, shown, opts.delimiter)
    if len(probe) < 2:
        raise DataError(f"{shown}: no data rows after the header")
    fh.seek(start)
    with _csv_errors(fh, start, shown, opts):
        if chunk_rows is None:
            yield pd.read_csv(fh, index_col=False, **kwargs)
            return
        with pd.read_csv(fh, index_col=False, chunksize=chunk_rows, **kwargs) as reader:
            yield from reader


def _check_delimiter(probe: pd.DataFrame, shown: str, delimiter: str) -> None:
    if len(probe.columns) != 1 or probe.empty:
        return
    header = str(probe.iloc[0, 0])
    seen = {d: header.count(d) for d in _DELIMITERS if d != delimiter and d in header}
    if not seen:
        return
    best = max(seen, key=lambda d: seen[d])
    declared = _DELIMITERS.get(delimiter, repr(delimiter))
    raise DataError(
        f"{shown}: the header is one column ({_clip(header)!r}) holding {seen[best]}"
        f" {_DELIMITERS[best]}(s): the file looks {_DELIMITERS[best]}-delimited, not"
        f" {declared}-delimited; set csv: {{delimiter: {json.dumps(best)}}} on the source"
    )


@contextmanager
def _csv_errors(fh: IO[bytes], start: int, shown: str, opts: CsvOptions) -> Iterator[None]:
    try:
        yield
    except pd.errors.EmptyDataError:
        raise DataError(f"{shown}: empty file: expected a header line and data rows") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{shown}: {_locate_decode_error(fh, start, opts.encoding, exc)}") from None
    except LookupError:
        raise ConfigError(f"{shown}: unknown encoding {opts.encoding!r}") from None
    except pd.errors.ParserError as exc:
        m = _RAGGED.search(str(exc))
        if m:
            expected, line, saw = m.groups()
            raise DataError(
                f"{shown}: line {line}: expected {expected} fields, found {saw}"
            ) from None
        raise DataError(f"{shown}: cannot parse the CSV: {_first_line(exc)}") from None
    except (ValueError, OSError) as exc:
        raise DataError(f"{shown}: cannot read the CSV: {_first_line(exc)}") from None


def _locate_decode_error(fh: IO[bytes], start: int, encoding: str, exc: UnicodeDecodeError) -> str:
    """Find the first undecodable byte by decoding the file again, chunk by chunk."""
    fh.seek(start)
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = lines = 0
    while True:
        chunk = fh.read(_SAMPLE)
        pending = decoder.getstate()[0]
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as bad:
            at = offset - len(pending) + bad.start
            data = pending + chunk
            lines += data[: max(bad.start, 0)].count(b"\n") - pending.count(b"\n")
            return (
                f"line {lines + 1}: not valid {encoding} at byte offset {at}"
                f" ({bad.reason}: {data[bad.start : bad.start + 4]!r})"
            )
        if not chunk:
            break
        offset += len(chunk)
        lines += chunk.count(b"\n")
    return f"not valid {encoding}: {exc.reason}"


def _parquet_file(fh: IO[bytes], shown: str) -> Any:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(fh)
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        raise DataError(f"{shown}: not a Parquet file: {_first_line(exc)}") from None
    if pf.metadata.num_rows == 0:
        raise DataError(f"{shown}: no data rows")
    return pf


def _parquet_chunks(fh: IO[bytes], shown: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    pf = _parquet_file(fh, shown)
    try:
        for batch in pf.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    except (OSError, ValueError) as exc:
        raise DataError(f"{shown}: cannot read the Parquet file: {_first_line(exc)}") from None


# -- uniqueness across chunks --------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _bytes(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} bytes"
    for unit in ("KiB", "MiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GiB"
