"""RFC 6962 Merkle trees over SHA-256: roots, an incremental frontier, and proofs.

The tree hash of n leaves is the Merkle Tree Hash of RFC 6962 section 2.1::

    MTH({})      = SHA-256()
    MTH({d0})    = SHA-256(0x00 || d0)                     leaf hash
    MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k = largest power of 2 < n

Functions here take *leaf hashes* (already ``SHA-256(0x00 || data)``, see :func:`leaf_hash`),
so callers hash each leaf once and may feed the same hash to a hash chain as well.

A :class:`Frontier` is the "compact range" of the first ``size`` leaves: the roots of the
perfect subtrees that make up ``[0, size)``, largest (leftmost) first, one per set bit of
``size``. Appending a leaf merges the equal-height subtrees at the right edge, so it costs
O(log n) hashes at worst and one on average; the tree root folds the frontier from the right.
:meth:`Frontier.extend` hashes whole aligned blocks level by level, which is several times
faster in Python than appending leaf by leaf.

Inclusion and consistency proofs follow RFC 9162 section 2.1.3 and 2.1.4. Every ``verify_*``
function returns ``None`` or raises :class:`~bastion.errors.IntegrityError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from bastion.errors import ConfigError, IntegrityError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "verify_consistency",
    "verify_frontier",
    "verify_inclusion",
]

HASH_SIZE = 32
_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return _sha256(b"\x01" + left + right).digest()


def _perfect_root(level: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree (``len(level)`` is a power of two), level by level."""
    sha = _sha256
    while len(level) > 1:
        level = [
            sha(b"\x01" + a + b).digest() for a, b in zip(level[::2], level[1::2], strict=True)
        ]
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 tree hash of ``leaves`` (leaf hashes)."""
    if not leaves:
        return EMPTY_ROOT
    return Frontier.of(leaves).root()


def _height_of_lowest_bit(n: int) -> int:
    return (n & -n).bit_length() - 1


class Frontier:
    """The right edge of a Merkle tree of ``size`` leaves: enough to append and to get the root.

    ``nodes`` are the perfect-subtree roots covering ``[0, size)``, leftmost first; subtree
    ``i`` has height equal to the ``i``-th set bit of ``size`` counted from the top.
    """

    __slots__ = ("_nodes", "_size")

    def __init__(self, size: int = 0, nodes: Iterable[bytes] = ()) -> None:
        node_list = list(nodes)
        if size < 0 or len(node_list) != size.bit_count():
            raise ConfigError(
                f"frontier: a tree of {size} leaves needs {max(size, 0).bit_count()} nodes,"
                f" got {len(node_list)}"
            )
        if any(not isinstance(n, bytes) or len(n) != HASH_SIZE for n in node_list):
            raise ConfigError(f"frontier: every node must be {HASH_SIZE} bytes")
        self._size = size
        self._nodes = node_list

    @classmethod
    def of(cls, leaves: Sequence[bytes]) -> Frontier:
        """The frontier of ``leaves`` (leaf hashes)."""
        frontier = cls()
        frontier.extend(leaves)
        return frontier

    @classmethod
    def from_hex(cls, size: int, nodes: Sequence[str]) -> Frontier:
        """Rebuild a frontier stored as a list of hex strings (see :meth:`to_hex`)."""
        try:
            raw = [bytes.fromhex(n) for n in nodes]
        except (TypeError, ValueError):
            raise ConfigError("frontier: expected a list of hex strings") from None
        return cls(size, raw)

    @property
    def size(self) -> int:
        """Number of leaves covered."""
        return self._size

    @property
    def nodes(self) -> tuple[bytes, ...]:
        """Perfect-subtree roots, leftmost (largest) first."""
        return tuple(self._nodes)

    def to_hex(self) -> list[str]:
        """The nodes as lowercase hex strings, leftmost first (the stored form)."""
        return [n.hex() for n in self._nodes]

    def copy(self) -> Frontier:
        """An independent copy."""
        clone = Frontier.__new__(Frontier)
        clone._size = self._size
        clone._nodes = list(self._nodes)
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self._size == other._size and self._nodes == other._nodes

    def __hash__(self) -> int:
        return hash((self._size, tuple(self._nodes)))

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()[:16]}...)"

    def _push(self, node: bytes, height: int) -> None:
        """Add a perfect subtree of ``2**height`` leaves; ``size`` must be a multiple of it."""
        nodes = self._nodes
        carry = self._size >> height
        while carry & 1:
            node = _sha256(b"\x01" + nodes.pop() + node).digest()
            carry >>= 1
        nodes.append(node)
        self._size += 1 << height

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash."""
        self._push(leaf, 0)

    def extend(self, leaves: Sequence[bytes]) -> None:
        """Add many leaf hashes, hashing aligned power-of-two blocks level by level."""
        start, end = 0, len(leaves)
        while start < end:
            height = (end - start).bit_length() - 1
            if self._size:
                height = min(height, _height_of_lowest_bit(self._size))
            block = 1 << height
            node = leaves[start] if block == 1 else _perfect_root(leaves[start : start + block])
            self._push(node, height)
            start += block

    def root(self) -> bytes:
        """RFC 6962 tree hash of the leaves covered."""
        nodes = self._nodes
        if not nodes:
            return EMPTY_ROOT
        root = nodes[-1]
        for node in reversed(nodes[:-1]):
            root = _sha256(b"\x01" + node + root).digest()
        return root


def verify_frontier(frontier: Frontier, leaves: Sequence[bytes]) -> None:
    """Raise unless ``frontier`` is exactly the frontier of ``leaves[:frontier.size]``."""
    if frontier.size > len(leaves):
        raise IntegrityError(f"frontier covers {frontier.size} leaves but only {len(leaves)} exist")
    if Frontier.of(leaves[: frontier.size]) != frontier:
        raise IntegrityError(f"frontier at size {frontier.size} does not match the leaves")


# -- proofs (RFC 9162 section 2.1.3 and 2.1.4) ----------------------------------------------


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Audit path for leaf ``index`` in the tree of ``leaves``, leaf side first."""
    if not 0 <= index < len(leaves):
        raise ConfigError(f"index: expected 0..{len(leaves) - 1}, got {index}")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            path.append(merkle_root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            path.append(merkle_root(leaves[lo : lo + k]))
            lo += k
    path.reverse()
    return path


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise unless ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree ``root``."""
    if not 0 <= index < size:
        raise IntegrityError("inclusion proof: index outside the tree")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise IntegrityError("inclusion proof: too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise IntegrityError("inclusion proof does not verify")


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Proof that the tree of ``leaves[:old_size]`` is a prefix of the tree of ``leaves``."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ConfigError(f"old_size: expected 1..{n}, got {old_size}")
    proof: list[bytes] = []
    lo, hi, complete = 0, n, True
    m = old_size
    while m != hi:
        k = _split(hi - lo)
        if m - lo <= k:
            proof.append(merkle_root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(merkle_root(leaves[lo : lo + k]))
            lo += k
            complete = False
    if not complete:
        proof.append(merkle_root(leaves[lo:hi]))
    proof.reverse()
    return proof


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise unless ``proof`` shows the tree ``old_root`` is a prefix of ``new_root``."""
    if not 0 < old_size <= new_size:
        raise IntegrityError("consistency proof: sizes out of order")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise IntegrityError("consistency proof does not verify")
        return
    if not proof:
        raise IntegrityError("consistency proof: empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise IntegrityError("consistency proof: too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise IntegrityError("consistency proof does not verify")
