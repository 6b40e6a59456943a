"""Exact duplicates and duplicate flooding.

Flooding poisons a model by repeating a few chosen rows many times, as they are or with a
small change so that exact de-duplication misses them. Rows are grouped three ways:

- *exact*: equal in every compared column and the label;
- *near, one column*: equal in every column but one low-cardinality column (at most 1%
  of the rows as distinct values: a category, a small integer), and the label;
- *near, numbers*: equal in every categorical column and the label, with every number in
  the same cell of a log-scale grid of width ``tolerance`` (2% by default); two grids
  offset by half a cell, so two values closer than half the tolerance always share one.

Groups that share a row are merged (a connected component over rows and group keys).
A component of ``flood_size`` rows or more is a flood: every row in it is a finding
(reason ``duplicate_flood``, score the component's size), since none of the copies can
be told from the original. In a smaller exact group the repeats after the first are
findings (reason ``exact_duplicate``).

High-cardinality numbers (weights, amounts) are never left out of a comparison: two
people equal in every other column but with unrelated weights are two people — on Adult
there are 158 such groups of five or more. Columns named in ``ignore`` (ids, timestamps)
are left out everywhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bastion.defenses._table import Encoded
from bastion.defenses.findings import Finding

__all__ = ["duplicates"]

_MIX = np.uint64(0x9E3779B97F4A7C15)


def duplicates(
    enc: Encoded,
    y: np.ndarray,
    *,
    flood_size: int = 5,
    near: bool = True,
    ignore: tuple[str, ...] = (),
    tolerance: float = 0.02,
) -> list[Finding]:
    """Findings for exact repeats and for members of duplicate floods."""
    n = enc.n
    if n == 0:
        return []
    use = [j for j, c in enumerate(enc.columns) if c not in ignore]
    parts = {j: _hash(enc.exact[j], j) for j in use}
    label = _hash(y.astype(np.int64), 10_000)
    exact_key = label + sum(parts.values(), np.zeros(n, np.uint64))
    keys = [exact_key]
    if near:
        low = [j for j in use if len(enc.values[j]) <= max(2, n // 100)]
        keys += [exact_key - parts[j] for j in low]
        nums = [j for j in use if enc.numeric[j]]
        if nums:
            base = label + sum(
                (parts[j] for j in use if not enc.numeric[j]), np.zeros(n, np.uint64)
            )
            for offset in (0.0, 0.5):  # two grids: values within tolerance/2 share a cell
                rounded = base.copy()
                for j in nums:
                    cells = _log_bucket(enc.raw_numeric[enc.columns[j]], tolerance, offset)
                    rounded = rounded + _hash(cells, j)
                keys.append(rounded)
    size = _component_sizes(keys, n)
    found: list[Finding] = []
    flood = size >= flood_size
    for r in np.flatnonzero(flood):
        found.append(
            Finding(
                int(r),
                "duplicates",
                "duplicate_flood",
                float(size[r]),
                f"one of {size[r]} identical or near-identical rows",
            )
        )
    repeat = pd.Series(exact_key).duplicated(keep="first").to_numpy() & ~flood
    for r in np.flatnonzero(repeat):
        found.append(
            Finding(int(r), "duplicates", "exact_duplicate", 2.0, "repeats an earlier row")
        )
    found.sort(key=lambda f: f.row if f.row is not None else -1)
    return found


def _hash(codes: np.ndarray, salt: int) -> np.ndarray:
    """A well-mixed 64-bit hash of each code, different per column (splitmix64)."""
    with np.errstate(over="ignore"):
        z = codes.astype(np.int64).astype(np.uint64) + np.uint64(salt + 1) * _MIX
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _log_bucket(x: np.ndarray, tolerance: float, offset: float) -> np.ndarray:
    out = np.full(len(x), -(2**62), dtype=np.int64)
    ok = ~np.isnan(x)
    scaled = np.sign(x[ok]) * np.log1p(np.abs(x[ok])) / np.log1p(tolerance)
    out[ok] = np.floor(scaled + offset)
    return out


def _component_sizes(keys: list[np.ndarray], n: int) -> np.ndarray:
    """Size of each row's connected component over shared keys (1 for a lone row)."""
    from scipy.sparse import coo_matrix  # lazy: a cached run never imports scipy
    from scipy.sparse.csgraph import connected_components

    rows_list, nodes_list = [], []
    offset = n
    for key in keys:
        codes, uniques = pd.factorize(key)
        counts = np.bincount(codes, minlength=len(uniques))
        shared = counts[codes] >= 2
        rows_list.append(np.flatnonzero(shared))
        nodes_list.append(codes[shared] + offset)
        offset += len(uniques)
    rows = np.concatenate(rows_list) if rows_list else np.zeros(0, np.int64)
    nodes = np.concatenate(nodes_list) if nodes_list else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, nodes)), shape=(offset, offset))
    _count, label = connected_components(graph, directed=False)
    row_label = label[:n]
    sizes = np.bincount(row_label, minlength=int(row_label.max()) + 1)
    return np.asarray(sizes[row_label])
