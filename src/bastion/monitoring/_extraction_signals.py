"""Per-query features for the extraction detector, read from the training profile.

Everything here is derived once from a :class:`~bastion.monitoring.screening.TrainingProfile`
(no training rows are needed) and then evaluated on a request's rows with a few vectorised
NumPy calls per column:

* :meth:`Reference.features` turns rows into their encoded vectors (numeric z-scores and
  one-hot categories, the profile's :meth:`~TrainingProfile.encode` space), a per-column
  *code* (the raw numeric value or the category's index; used to count how many columns two
  queries differ in), the row's mean **surprisal** in bits under the profile (the same
  quantity as the input screen's ``ood_score``), and how many of the row's numeric values
  sit on an **atom** of the training distribution (a value that holds a large share of the
  column, such as ``capital-gain == 0`` or ``hours-per-week == 40``).
* :attr:`Reference.expected_bits` and :attr:`Reference.expected_atoms` are what rows drawn
  from the training distribution score on average, computed from the profile's quantile
  grid and category frequencies (each column's expectation depends only on its marginal).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bastion.monitoring.profile import (
    QUANTILE_LEVELS,
    RowsByColumn,
    Table,
    TrainingProfile,
    has_column,
    is_null,
    n_rows_of,
)

#: A numeric value holding at least this share of its training column is an atom.
ATOM_MASS = 0.2
_NULL_CODE = -1e300  # a numeric null's code (never a real value)


@dataclass(frozen=True)
class Features:
    """Features of a batch of rows, one entry (or row of a matrix) per row."""

    vectors: np.ndarray  # float32, rows x profile.dim
    codes: np.ndarray  # float64, rows x columns (numeric value or category index)
    bits: np.ndarray  # float64, rows: mean surprisal per column
    atoms: np.ndarray  # float64, rows x atom columns: 1 where the value is on an atom

    def rows(self, start: int, stop: int) -> Features:
        """The features of rows ``start:stop`` (views, no copy)."""
        return Features(
            self.vectors[start:stop],
            self.codes[start:stop],
            self.bits[start:stop],
            self.atoms[start:stop],
        )


class History:
    """One principal's bounded history for the extraction detector: ring buffers of the
    last ``window`` distinct queries, the running sums of their per-query features (Python
    numbers: a single-row request updates them in place), the coverage cells' counts and
    how many are occupied, and the keyed hashes of the rows already seen."""

    __slots__ = (
        "atom_sums",
        "atoms",
        "bins",
        "bits",
        "codes",
        "counts",
        "last_alarm",
        "narrow",
        "near",
        "occupied",
        "order",
        "queries",
        "repeats",
        "seen",
        "sums",
        "vectors",
    )

    def __init__(
        self, window: int, dim: int, n_cols: int, n_atoms: int, n_numeric: int, n_bins: int
    ) -> None:
        self.vectors = np.zeros((window, dim), dtype=np.float32)
        self.codes = np.zeros((window, n_cols))
        self.bits = np.zeros(window)
        self.atoms = np.zeros((window, n_atoms))
        self.near = np.zeros(window)
        self.narrow = np.zeros(window)
        self.sums = [0.0, 0.0, 0.0]  # bits, near, narrow over the window
        self.atom_sums = [0.0] * n_atoms  # queries on each atom column's atoms
        self.bins = np.zeros((window, n_numeric), dtype=np.intp)
        self.counts = [[0] * n_bins for _ in range(n_numeric)]  # queries per coverage cell
        self.occupied = 0  # cells with a query
        self.queries = 0
        self.repeats = 0
        self.last_alarm: int | None = None
        self.seen: set[bytes] = set()
        self.order: deque[bytes] = deque()

    def first_time(self, digest: bytes, capacity: int) -> bool:
        """Remember ``digest``; False when the principal already sent that row."""
        if digest in self.seen:
            self.repeats += 1
            return False
        if len(self.order) >= capacity:
            self.seen.discard(self.order.popleft())
        self.seen.add(digest)
        self.order.append(digest)
        return True


def _position(index: dict[str, int], value: Any) -> int:
    """The category's index, -1 for a null or a value unseen in training (as the
    profile's encoder reads them: ``str(value).strip()``)."""
    if type(value) is str and value in index:
        return index[value]
    return -1 if is_null(value) else index.get(str(value).strip(), -1)


class Reference:
    """The training profile's view of a query: see the module docstring."""

    def __init__(self, profile: TrainingProfile) -> None:
        self.profile = profile
        self.n_numeric = len(profile.numeric)
        self.n_columns = self.n_numeric + len(profile.categorical)
        floor = profile._floor
        self._groups: list[tuple[int, int, np.ndarray, float]] = []
        offset = self.n_numeric
        expected = 0.0
        for name, stats in profile.categorical.items():
            index = profile._cat_index[name]
            freqs = np.array([stats.frequencies[v] for v in sorted(index, key=index.__getitem__)])
            bits = -np.log2(np.clip(freqs, floor, 1.0))
            null_bits = -math.log2(max(stats.null_fraction, floor))
            self._groups.append((offset, offset + len(index), bits, null_bits))
            expected += float(np.sum(freqs * bits)) + stats.null_fraction * null_bits
            offset += len(index)
        levels = np.asarray(QUANTILE_LEVELS)
        grid = np.linspace(0.0, 1.0, 4001)
        self._atoms: list[np.ndarray] = []
        self._atom_columns: list[int] = []
        expected_atoms: list[float] = []
        # values drawn through each column's quantile grid, and their mean surprisal
        drawn = [np.interp(grid, levels, np.asarray(n.quantiles)) for n in profile.numeric.values()]
        sample_bits = profile.numeric_bits(np.column_stack(drawn)).mean(axis=0) if drawn else []
        for j, num in enumerate(profile.numeric.values()):
            q = np.asarray(num.quantiles)
            null_bits = -math.log2(max(num.null_fraction, floor))
            expected += (1.0 - num.null_fraction) * float(sample_bits[j]) + (
                num.null_fraction * null_bits
            )
            atoms, masses = [], []
            for value in np.unique(q):
                on = levels[q == value]
                if on[-1] - on[0] >= ATOM_MASS:
                    atoms.append(value)
                    masses.append(on[-1] - on[0])
            if atoms:
                self._atoms.append(np.asarray(atoms, dtype=np.float64))
                self._atom_columns.append(j)
                expected_atoms.append((1.0 - num.null_fraction) * float(sum(masses)))
        self.expected_bits = expected / max(self.n_columns, 1)
        # categorical columns: name -> value index, offset of the one-hot block, bits per
        # position in the encoded vector (numeric positions unused)
        self._cats = [(name, dict(profile._cat_index[name])) for name in profile.categorical]
        self._offsets = np.array([start for start, *_ in self._groups], dtype=np.intp)
        self._flat_bits = np.zeros(profile.dim)
        for start, stop, table, _ in self._groups:
            self._flat_bits[start:stop] = table
        self._null_bits = np.array([nb for *_, nb in self._groups])
        self._atom_values = [
            (k, j, float(v))
            for k, (j, vs) in enumerate(zip(self._atom_columns, self._atoms, strict=True))
            for v in vs
        ]
        # for one row at a time (_one)
        self._mean_row, self._std_row = profile._mean.tolist(), profile._std.tolist()
        self._flat_row, self._null_row = self._flat_bits.tolist(), self._null_bits.tolist()
        self._cat_rows = [
            (name, index, int(start))
            for (name, index), start in zip(self._cats, self._offsets, strict=True)
        ]
        #: Per atom column, the share of training rows on an atom (a lower bound: the grid
        #: is coarse, so real rows land on atoms at least this often).
        self.expected_atoms = np.asarray(expected_atoms)

    def features(self, frame: Table) -> Features:
        """The features of every row of ``frame`` (a DataFrame or rows by column).

        The vectors equal :meth:`TrainingProfile.encode`'s; built here from the category
        indices directly (a few dict lookups per row), as the detector runs per request.
        """
        prof = self.profile
        if n_rows_of(frame) == 1:  # the server's common case, without NumPy
            one = prof.row_numeric(frame)
            if one is not None:
                return self._one(frame, one)
        raw = prof.numeric_matrix(frame)
        n, nn = raw.shape
        null = np.isnan(raw)
        vectors = np.zeros((n, prof.dim), dtype=np.float32)
        vectors[:, :nn] = np.where(null, 0.0, (raw - prof._mean) / prof._std)
        codes = np.empty((n, self.n_columns))
        codes[:, :nn] = np.where(null, _NULL_CODE, raw)
        bits = prof.numeric_bits(raw).sum(axis=1) if nn else np.zeros(n)
        atoms = np.zeros((n, len(self._atoms)))
        for k, j, value in self._atom_values:
            atoms[:, k] += raw[:, j] == value  # a column's atoms are distinct values
        if self._cats:
            pos = np.empty((n, len(self._cats)), dtype=np.intp)
            for k, (name, index) in enumerate(self._cats):
                if not has_column(frame, name):
                    pos[:, k] = -1
                    continue
                values = frame[name].tolist() if isinstance(frame, pd.DataFrame) else frame[name]
                pos[:, k] = [_position(index, v) for v in values]
            hit = pos >= 0
            flat = np.where(hit, pos + self._offsets, 0)
            r, c = np.nonzero(hit)
            vectors[r, flat[r, c]] = 1.0
            codes[:, nn:] = pos
            bits += np.where(hit, self._flat_bits[flat], self._null_bits).sum(axis=1)
        return Features(vectors, codes, bits / max(self.n_columns, 1), atoms)

    def _one(self, columns: RowsByColumn, raw: list[float]) -> Features:
        """:meth:`features` of one row in plain Python (the same arithmetic)."""
        nn = self.n_numeric
        vector = np.zeros((1, self.profile.dim), dtype=np.float32)
        codes = [0.0] * self.n_columns
        z = [0.0] * nn
        for j, x in enumerate(raw):
            if x != x:
                codes[j] = _NULL_CODE
            else:
                codes[j] = x
                z[j] = (x - self._mean_row[j]) / self._std_row[j]
        vector[0, :nn] = z
        bits = sum(self.profile.row_bits(raw)) if nn else 0.0
        atoms = [0.0] * len(self._atoms)
        for k, j, value in self._atom_values:
            atoms[k] += raw[j] == value
        cat_bits = 0.0
        for k, (name, index, start) in enumerate(self._cat_rows):
            values = columns.get(name)
            pos = _position(index, values[0]) if values is not None else -1
            codes[nn + k] = pos
            if pos >= 0:
                vector[0, start + pos] = 1.0
                cat_bits += self._flat_row[start + pos]
            else:
                cat_bits += self._null_row[k]
        bits += cat_bits
        return Features(
            vector,
            np.array([codes]),
            np.array([bits / max(self.n_columns, 1)]),
            np.array([atoms]).reshape(1, len(self._atoms)),
        )
