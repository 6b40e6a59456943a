"""RFC 6962 Merkle trees: checked against a naive recursive reference and the CT vectors."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.errors import ConfigError, IntegrityError
from bastion.security.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_consistency,
    verify_frontier,
    verify_inclusion,
)


def naive_root(leaves: list[bytes]) -> bytes:
    """MTH of RFC 6962 section 2.1, written as the RFC writes it."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + naive_root(leaves[:k]) + naive_root(leaves[k:])).digest()


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 section 2.1.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_root(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_root(leaves[:k])]


def naive_proof(m: int, leaves: list[bytes], complete: bool = True) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 6962 section 2.1.2."""
    n = len(leaves)
    if m == n:
        return [] if complete else [naive_root(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*naive_proof(m, leaves[:k], complete), naive_root(leaves[k:])]
    return [*naive_proof(m - k, leaves[k:], False), naive_root(leaves[:k])]


leaf_lists = st.lists(st.binary(max_size=12).map(leaf_hash), max_size=70)
nonempty_leaf_lists = st.lists(st.binary(max_size=12).map(leaf_hash), min_size=1, max_size=70)

# Certificate Transparency's reference leaves and tree heads (RFC 6962 test data).
CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
             "606162636465666768696a6b6c6d6e6f"]  # fmt: skip
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATH_0_OF_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]


def test_roots_match_the_certificate_transparency_vectors() -> None:
    leaves = [leaf_hash(bytes.fromhex(d)) for d in CT_LEAVES]
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    for size, root in enumerate(CT_ROOTS):
        assert merkle_root(leaves[:size]).hex() == root
        assert Frontier.of(leaves[:size]).root().hex() == root
    assert [p.hex() for p in inclusion_proof(0, leaves)] == CT_PATH_0_OF_8


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


@given(leaf_lists)
def test_root_matches_the_naive_recursion(leaves: list[bytes]) -> None:
    assert merkle_root(leaves) == naive_root(leaves)


@given(leaf_lists)
def test_appending_leaf_by_leaf_gives_every_prefix_root(leaves: list[bytes]) -> None:
    frontier = Frontier()
    for i, leaf in enumerate(leaves):
        frontier.append(leaf)
        assert frontier.size == i + 1
        assert len(frontier.nodes) == (i + 1).bit_count()
        assert frontier.root() == naive_root(leaves[: i + 1])


@given(leaf_lists, st.lists(st.integers(min_value=0, max_value=40), max_size=8))
def test_extending_in_any_chunks_equals_appending(leaves: list[bytes], cuts: list[int]) -> None:
    one_by_one = Frontier()
    for leaf in leaves:
        one_by_one.append(leaf)
    chunked, start = Frontier(), 0
    for step in [*cuts, len(leaves)]:
        chunked.extend(leaves[start : start + step])
        start = min(start + step, len(leaves))
    chunked.extend(leaves[start:])
    assert chunked == one_by_one
    assert chunked.root() == naive_root(leaves)


@given(leaf_lists)
def test_a_stored_frontier_round_trips(leaves: list[bytes]) -> None:
    frontier = Frontier.of(leaves)
    restored = Frontier.from_hex(frontier.size, frontier.to_hex())
    assert restored == frontier and restored.root() == frontier.root()
    copy = frontier.copy()
    copy.append(leaf_hash(b"more"))
    assert frontier == Frontier.of(leaves)  # the copy is independent


@given(nonempty_leaf_lists, st.data())
def test_a_frontier_verifies_against_its_leaves_only(
    leaves: list[bytes], data: st.DataObject
) -> None:
    size = data.draw(st.integers(min_value=1, max_value=len(leaves)))
    frontier = Frontier.of(leaves[:size])
    verify_frontier(frontier, leaves)
    nodes = list(frontier.nodes)
    i = data.draw(st.integers(min_value=0, max_value=len(nodes) - 1))
    nodes[i] = bytes(b ^ 1 for b in nodes[i])
    with pytest.raises(IntegrityError):
        verify_frontier(Frontier(size, nodes), leaves)
    with pytest.raises(IntegrityError):
        verify_frontier(Frontier.of([*leaves, leaf_hash(b"x")]), leaves)


@pytest.mark.parametrize(
    ("size", "nodes"),
    [(3, [bytes(32)]), (1, [bytes(31)]), (-1, []), (0, [bytes(32)])],
)
def test_an_impossible_frontier_is_refused(size: int, nodes: list[bytes]) -> None:
    with pytest.raises(ConfigError, match="frontier"):
        Frontier(size, nodes)


def test_a_stored_frontier_must_be_hex() -> None:
    with pytest.raises(ConfigError, match="hex"):
        Frontier.from_hex(1, ["zz"])


@given(nonempty_leaf_lists, st.data())
def test_inclusion_proofs_match_rfc6962_and_verify(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    proof = inclusion_proof(index, leaves)
    assert proof == naive_path(index, leaves)
    root = naive_root(leaves)
    verify_inclusion(index, n, leaves[index], proof, root)
    with pytest.raises(IntegrityError):
        verify_inclusion(index, n, leaf_hash(b"not there"), proof, root)
    if proof:
        bad = [*proof]
        bad[0] = bytes(32)
        with pytest.raises(IntegrityError):
            verify_inclusion(index, n, leaves[index], bad, root)
        with pytest.raises(IntegrityError):
            verify_inclusion(index, n, leaves[index], proof[:-1], root)
    with pytest.raises(IntegrityError):
        verify_inclusion(index, n, leaves[index], [*proof, bytes(32)], root)
    with pytest.raises(IntegrityError):
        verify_inclusion(n, n, leaves[index], proof, root)


@given(nonempty_leaf_lists, st.data())
def test_consistency_proofs_match_rfc6962_and_verify(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    m = data.draw(st.integers(min_value=1, max_value=n))
    proof = consistency_proof(m, leaves)
    assert proof == naive_proof(m, leaves)
    old, new = naive_root(leaves[:m]), naive_root(leaves)
    verify_consistency(m, n, old, new, proof)
    forked = naive_root([leaf_hash(b"forged"), *leaves[1:m]])
    with pytest.raises(IntegrityError):
        verify_consistency(m, n, forged_or(old, forked), new, proof)
    if proof:
        with pytest.raises(IntegrityError):
            verify_consistency(m, n, old, new, [bytes(32), *proof[1:]])
    with pytest.raises(IntegrityError):
        verify_consistency(m, n, old, new, [*proof, bytes(32)])


def forged_or(real: bytes, forged: bytes) -> bytes:
    """The forged root, or a flipped one when forging changed nothing (a 1-leaf tree)."""
    return forged if forged != real else bytes(b ^ 1 for b in real)


def test_proof_arguments_are_checked() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(5)]
    with pytest.raises(ConfigError, match="index"):
        inclusion_proof(5, leaves)
    with pytest.raises(ConfigError, match="old_size"):
        consistency_proof(0, leaves)
    with pytest.raises(IntegrityError):
        verify_consistency(3, 2, EMPTY_ROOT, EMPTY_ROOT, [bytes(32)])
    with pytest.raises(IntegrityError):
        verify_consistency(2, 5, EMPTY_ROOT, EMPTY_ROOT, [])
