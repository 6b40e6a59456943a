"""Model-extraction detector: per principal, is the query stream one a thief would send?

An extraction attack needs queries that teach a surrogate the model's decision function
fast, and that shows in the inputs long before the surrogate is good (Tramèr et al. 2016;
Papernot et al. 2017; Juuti et al., PRADA, 2019; Pal et al., ActiveThief, 2020). For every
principal the detector keeps its last ``window`` *distinct* queries and five statistics
over them, each compared with what rows drawn from the training profile
(:class:`~bastion.monitoring.screening.TrainingProfile`) would give:

``off_profile``     mean surprisal of the queries, in bits per column, minus the training
                    rows' expectation. Uniform probes and synthetic boundary points are
                    unlikely under the training marginals (old ages with doctorates and
                    large capital losses...): several tenths of a bit above; any sample of
                    real rows is within a few hundredths.
``synthetic``       the share of the training distribution's atoms (values that hold a large
                    part of a column: ``capital-gain == 0``, ``hours-per-week == 40``) that
                    the queries miss. Perturbing a real row moves its values off the atoms;
                    real rows land on them at the training rate.
``neighbourhood``   the fraction of queries within ``near`` (L2, in the encoded space: numeric
                    z-scores and one-hot categories) of an earlier query of the same
                    principal: synthetic neighbourhoods around seed rows (Jacobian-style
                    augmentation, small steps). Real rows are rarely that close.
``one_feature``     the fraction of queries that differ from their nearest earlier query in
                    exactly one column: low-entropy perturbation (one feature varied at a
                    time, line search along an axis).
``coverage``        the fraction of occupied cells when every numeric column's training
                    range is cut into ``coverage_bins`` bins: a sweep of the input space
                    fills cells that real data never reaches.

The decision combines them: once ``min_queries`` distinct queries are known, the principal
alarms when any statistic reaches its limit (:data:`DEFAULT_LIMITS`); the :class:`Alarm`
names that statistic as its ``reason`` (a reason code, the first of :data:`REASONS` over
its limit when several are) with its value. A detector that is not sure stays quiet:
limits sit well above what any benign pattern measured on UCI Adult reaches (replays of
``adult.test``, small pools, hot keys).

**Exact repeats are not evidence** (a batch test sends one row 200 times; a repeat reveals
nothing the first answer did not): a row whose encoded vector equals one the principal sent
before is not counted (64-bit keyed BLAKE2b hashes of the last ``4 * window`` distinct rows,
keyed per process so they say nothing about the values). A small pool of rows cycled many
times is therefore a handful of distinct queries, however long the load test runs.

The detector cannot tell a principal who replays real rows from a public pool (as an
attacker holding similar data would) from a customer sending its own real rows: the inputs
are the same. The daily budget (``bastion serve --daily-budget``) bounds what such a
stream learns per day. Cost: one nearest-neighbour search over ``window`` vectors and a few
vectorised per-column lookups per distinct row (tens of microseconds; see
``benchmarks/bench_extraction.py``). After an alarm the statistics keep running, and
further alarms are reported at most once per ``window`` queries. The detector reports; the
server's configured action (throttle, block, notify) decides.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bastion.errors import ConfigError
from bastion.monitoring._extraction_signals import Features, History, Reference
from bastion.monitoring.screening import RowsByColumn, Table, TrainingProfile

__all__ = [
    "DEFAULT_LIMITS",
    "REASONS",
    "Alarm",
    "ExtractionMonitor",
    "Features",
]

#: Reason codes of an alarm, in order of precedence when several statistics are over.
REASONS: tuple[str, ...] = ("coverage", "off_profile", "synthetic", "neighbourhood", "one_feature")
#: Limit per statistic (Adult-calibrated; benign maxima and attack values in the docs).
DEFAULT_LIMITS: dict[str, float] = {
    "coverage": 0.80,
    "off_profile": 0.25,
    "synthetic": 0.30,
    "neighbourhood": 0.30,
    "one_feature": 0.30,
}


@dataclass(frozen=True)
class Alarm:
    """A principal's queries look like an extraction attack."""

    principal: str
    reason: str  # one of REASONS: the statistic furthest over its limit
    statistic: float  # that statistic's value
    queries: int  # distinct queries the principal had made when the alarm fired


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, got {value!r}")


class ExtractionMonitor:
    """Per-principal extraction detector; see the module docstring.

    ``limits`` overrides some of :data:`DEFAULT_LIMITS` (keys from :data:`REASONS`).
    ``max_principals`` bounds memory: the least recently seen principal is forgotten when a
    new one arrives beyond it.
    """

    def __init__(
        self,
        profile: TrainingProfile,
        *,
        window: int = 200,
        min_queries: int = 50,
        near: float = 0.25,
        coverage_bins: int = 10,
        limits: Mapping[str, float] | None = None,
        max_principals: int = 10_000,
    ) -> None:
        _check_int("window", window, 3)
        _check_int("coverage_bins", coverage_bins, 2)
        _check_int("max_principals", max_principals, 1)
        if isinstance(min_queries, bool) or not (
            isinstance(min_queries, int) and 3 <= min_queries <= window
        ):
            raise ConfigError(
                f"min_queries: expected an integer in [3, window], got {min_queries!r}"
            )
        if not (isinstance(near, int | float) and near > 0):
            raise ConfigError(f"near: expected a positive distance, got {near!r}")
        merged = dict(DEFAULT_LIMITS)
        for key, value in (limits or {}).items():
            if key not in merged:
                raise ConfigError(f"limits: unknown statistic {key!r}; expected one of {REASONS}")
            if not (isinstance(value, int | float) and value > 0):
                raise ConfigError(f"limits[{key!r}]: expected a positive number, got {value!r}")
            merged[key] = float(value)
        if merged["coverage"] > 1 or merged["neighbourhood"] > 1 or merged["one_feature"] > 1:
            raise ConfigError("limits: coverage, neighbourhood and one_feature are fractions <= 1")
        self.profile = profile
        self.window = window
        self.min_queries = min_queries
        self.near = float(near)
        self.coverage_bins = coverage_bins
        self.limits = merged
        self.max_principals = max_principals
        self._ref = Reference(profile)
        self._lo = np.array([s.min for s in profile.numeric.values()])
        span = np.array([s.max - s.min for s in profile.numeric.values()])
        self._span = np.where(span > 0, span, 1.0)
        self._cell_scale = (self._lo.tolist(), self._span.tolist())  # one row: _add_one
        self._expected_atoms = self._ref.expected_atoms.tolist()
        self._states: OrderedDict[str, History] = OrderedDict()
        self._row_key = secrets.token_bytes(32)  # per process: row hashes reveal nothing
        self._seen_capacity = 4 * window

    def _state(self, principal: str) -> History:
        st = self._states.get(principal)
        if st is None:
            ref = self._ref
            st = History(
                self.window,
                self.profile.dim,
                ref.n_columns,
                ref.expected_atoms.size,
                ref.n_numeric,
                self.coverage_bins,
            )
            self._states[principal] = st
            while len(self._states) > self.max_principals:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(principal)
        return st

    def observe(self, principal: str, rows: Sequence[Mapping[str, Any]]) -> Alarm | None:
        """Record the rows of one request (each row is one query); return an alarm or None."""
        if len(rows) == 0:
            return None
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
        return self._observe(principal, frame)

    def observe_columns(self, principal: str, columns: RowsByColumn) -> Alarm | None:
        """:meth:`observe` for rows column by column (the server's fast path: no DataFrame)."""
        if not columns or not len(next(iter(columns.values()))):
            return None
        return self._observe(principal, columns)

    def features(self, frame: Table) -> Features:
        """The detector's features of every row of ``frame`` (vectorised over the rows):
        the first half of :meth:`observe`, which the server runs once for the requests of
        one event-loop turn (:class:`~bastion.serving.turns.PerTurn`)."""
        return self._ref.features(frame)

    def observe_features(self, principal: str, features: Features) -> Alarm | None:
        """The second half of :meth:`observe`: record one request's rows, given their
        :meth:`features` (or a :meth:`Features.rows` slice of a larger batch's)."""
        if features.vectors.shape[0] == 0:
            return None
        return self._observe_features(principal, features)

    def _observe(self, principal: str, frame: Table) -> Alarm | None:
        return self._observe_features(principal, self._ref.features(frame))

    def _observe_features(self, principal: str, f: Features) -> Alarm | None:
        st = self._state(principal)
        fresh = [
            i
            for i in range(f.vectors.shape[0])
            if st.first_time(
                hashlib.blake2b(f.vectors[i].tobytes(), digest_size=8, key=self._row_key).digest(),
                self._seen_capacity,
            )
        ]
        if not fresh:
            return None  # only repeats: the statistics did not move
        if len(fresh) == 1:
            self._add_one(st, f, fresh[0])
        else:
            self._add(st, _take(f, fresh))
        return self._check(principal, st)

    def _add_one(self, st: History, f: Features, i: int) -> None:
        """:meth:`_add` for one row (a single-row request): the window's sums and cell
        counts updated in place, in plain Python but for the nearest-neighbour search."""
        w, v, code = self.window, f.vectors[i], f.codes[i]
        held, slot = min(st.queries, w), st.queries % w
        near = narrow = 0.0
        if held:
            # the nearest stored query found in float32 (half the memory traffic of
            # float64; a tie within float32 rounding may pick the other of two equally
            # near queries), its distance then computed in float64 as the batch path does
            diff = st.vectors[:held] - v
            nn = int(np.argmin(np.einsum("ij,ij->i", diff, diff)))
            exact = st.vectors[nn].astype(np.float64) - v
            near = float(exact @ exact < self.near * self.near)
            narrow = float(np.count_nonzero(st.codes[nn] != code) == 1)
        bits, atoms = float(f.bits[i]), f.atoms[i].tolist()
        n_bins, counts = self.coverage_bins, st.counts
        cell = [
            _cell((x - lo) / span * n_bins, n_bins)
            for x, lo, span in zip(
                code[: self._ref.n_numeric].tolist(), *self._cell_scale, strict=True
            )
        ]
        if st.queries >= w:
            st.sums[0] -= float(st.bits[slot])
            st.sums[1] -= float(st.near[slot])
            st.sums[2] -= float(st.narrow[slot])
            for k, old in enumerate(st.atoms[slot].tolist()):
                st.atom_sums[k] -= old
            for column, old in zip(counts, st.bins[slot].tolist(), strict=True):
                column[old] -= 1
                st.occupied -= column[old] == 0
        st.sums[0] += bits
        st.sums[1] += near
        st.sums[2] += narrow
        for k, new in enumerate(atoms):
            st.atom_sums[k] += new
        for column, new in zip(counts, cell, strict=True):
            st.occupied += column[new] == 0
            column[new] += 1
        st.vectors[slot], st.codes[slot], st.atoms[slot], st.bins[slot] = v, code, atoms, cell
        st.bits[slot], st.near[slot], st.narrow[slot] = bits, near, narrow
        st.queries += 1

    def _cells(self, codes: np.ndarray) -> np.ndarray:
        """Each numeric value's coverage cell (codes: one row, or rows x columns)."""
        scaled = (codes[..., : self._ref.n_numeric] - self._lo) / self._span * self.coverage_bins
        cells: np.ndarray = np.clip(np.floor(scaled), 0, self.coverage_bins - 1).astype(np.intp)
        return cells

    def _add(self, st: History, f: Features) -> None:
        """Append the distinct rows ``f`` to the principal's window, all at once.

        Row ``i`` is compared with the ``window`` distinct queries before it (the stored
        ones still in the window, then the rows of ``f`` before it), exactly as if the rows
        came one by one; the window's sums are then recounted from what it holds.
        """
        w, k, q = self.window, f.vectors.shape[0], st.queries
        held = min(q, w)
        order = np.arange(q - held, q) % w  # the stored queries, oldest first
        seq_v = np.concatenate([st.vectors[order], f.vectors]).astype(np.float64)
        seq_c = np.concatenate([st.codes[order], f.codes])
        pos = held + np.arange(k)  # row i's place in the sequence
        first = pos - np.minimum(q + np.arange(k), w)  # the oldest query it is compared with
        new = seq_v[held:]
        d2 = (
            np.einsum("ij,ij->i", new, new)[:, None]
            + np.einsum("ij,ij->i", seq_v, seq_v)[None, :]
            - 2.0 * new @ seq_v.T
        )
        j = np.arange(held + k)[None, :]
        d2 = np.where((j >= first[:, None]) & (j < pos[:, None]), np.maximum(d2, 0.0), np.inf)
        nn = np.argmin(d2, axis=1)
        has = pos > first
        near = has & (d2[np.arange(k), nn] < self.near * self.near)
        narrow = has & (np.count_nonzero(seq_c[nn] != f.codes, axis=1) == 1)
        cells = self._cells(f.codes)
        keep = slice(max(0, k - w), k)  # a batch longer than the window: its last w rows
        slots = (q + np.arange(k))[keep] % w
        st.vectors[slots] = f.vectors[keep]
        st.codes[slots] = f.codes[keep]
        st.bits[slots], st.near[slots], st.narrow[slots] = f.bits[keep], near[keep], narrow[keep]
        st.atoms[slots] = f.atoms[keep]
        st.bins[slots] = cells[keep]
        st.queries = q + k
        live = slice(0, min(st.queries, w))
        st.sums = [
            float(st.bits[live].sum()),
            float(st.near[live].sum()),
            float(st.narrow[live].sum()),
        ]
        st.atom_sums = st.atoms[live].sum(axis=0).tolist()
        n_bins = self.coverage_bins
        flat = (st.bins[live] + np.arange(st.bins.shape[1]) * n_bins).ravel()
        shape = (self._ref.n_numeric, n_bins)
        counts = np.bincount(flat, minlength=shape[0] * n_bins).reshape(shape)
        st.counts, st.occupied = counts.tolist(), int(np.count_nonzero(counts))

    def _statistics(self, st: History) -> dict[str, float]:
        n = max(min(st.queries, self.window), 1)
        ref = self._ref
        bits, near, narrow = (total / n for total in st.sums)
        # the largest share of an atom column's atoms missed
        missed = [
            1.0 - s / n / e
            for s, e in zip(st.atom_sums, self._expected_atoms, strict=True)
            if e > 0
        ]
        cells = self._ref.n_numeric * self.coverage_bins
        return {
            "coverage": st.occupied / cells if cells else 0.0,
            "off_profile": bits - ref.expected_bits,
            "synthetic": max([0.0, *missed]),
            "neighbourhood": near,
            "one_feature": narrow,
        }

    def _check(self, principal: str, st: History) -> Alarm | None:
        if st.queries < self.min_queries:
            return None
        if st.last_alarm is not None and st.queries - st.last_alarm < self.window:
            return None
        values = self._statistics(st)
        reason = next((r for r in REASONS if values[r] >= self.limits[r]), None)
        if reason is None:
            return None
        st.last_alarm = st.queries
        return Alarm(principal, reason, values[reason], st.queries)

    def stats(self, principal: str) -> dict[str, Any]:
        """A principal's counts and statistics (zeros for one never seen): ``queries``
        (distinct), ``repeats``, ``alarmed_at`` and one entry per reason in :data:`REASONS`
        (None before ``min_queries``)."""
        st = self._states.get(principal)
        out: dict[str, Any] = {"queries": 0, "repeats": 0, "alarmed_at": None}
        if st is None:
            return out | dict.fromkeys(REASONS)
        values = self._statistics(st)
        ready = st.queries >= self.min_queries
        out.update(queries=st.queries, repeats=st.repeats, alarmed_at=st.last_alarm)
        return out | {r: (values[r] if ready else None) for r in REASONS}

    def forget(self, principal: str) -> None:
        """Drop a principal's history (after an operator cleared it)."""
        self._states.pop(principal, None)


def _cell(scaled: float, n_bins: int) -> int:
    """:meth:`ExtractionMonitor._cells` of one scaled value (floor, clipped to the bins)."""
    if not scaled >= 0:  # below the range (a null's code), or NaN
        return 0
    return n_bins - 1 if scaled >= n_bins - 1 else int(scaled)


def _take(f: Features, rows: list[int]) -> Features:
    """The features of the listed rows (a copy)."""
    return Features(f.vectors[rows], f.codes[rows], f.bits[rows], f.atoms[rows])
