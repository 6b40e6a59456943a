"""Verify Bastion's evidence without Bastion: statements (DSSE) and audit checkpoints.

Needs only Python 3.11+ and ``cryptography`` (``pip install cryptography``). Imports no
Bastion code. See docs/verify-outside.md for how to get the input files.

    python verify_outside.py --keys keys.jwk.json \\
        [--statement envelope.json ...] [--checkpoint checkpoint.json [--entries audit.json]]

Exit 0 when everything given verifies; 1 with a message naming what failed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

INTOTO = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"


class Failed(Exception):
    """Something did not verify."""


def load_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    """``{kid: key}`` from a JWK set of Ed25519 keys (``bastion keys export --public
    --format jwk``). Get this file from the key's owner over a channel you trust."""
    keys = {}
    for jwk in json.loads(path.read_text())["keys"]:
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise Failed(f"{path}: key {jwk.get('kid')!r} is not an Ed25519 key")
        raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        keys[jwk["kid"]] = Ed25519PublicKey.from_public_bytes(raw)
    return keys


# -- statements: DSSE v1 (https://github.com/secure-systems-lab/dsse) -------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: the exact bytes that are signed."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


def verify_statement(envelope: dict, keys: dict[str, Ed25519PublicKey]) -> dict:
    """The in-toto statement inside ``envelope``, after a signature by one of ``keys``
    verifies over PAE(payloadType, payload). The payload is read only after that."""
    payload_type = envelope["payloadType"]
    payload = base64.b64decode(envelope["payload"], validate=True)
    message = pae(payload_type, payload)
    for signature in envelope.get("signatures", []):
        key = keys.get(signature.get("keyid", ""))
        if key is None:
            continue  # keyid is only a hint: a key we do not trust proves nothing
        try:
            key.verify(base64.b64decode(signature["sig"], validate=True), message)
        except InvalidSignature:
            continue
        break
    else:
        raise Failed("no signature verifies under a trusted key")
    if payload_type != INTOTO:
        raise Failed(f"payloadType is {payload_type!r}, expected {INTOTO}")
    statement = json.loads(payload)
    if statement.get("_type") != STATEMENT_V1:
        raise Failed(f"_type is {statement.get('_type')!r}, expected {STATEMENT_V1}")
    return statement


# -- checkpoints: a signed RFC 6962 tree head over the audit log (docs/formats/checkpoint.md)


def checkpoint_message(cp: dict) -> bytes:
    return (
        f"bastion audit checkpoint v1\n{cp['tree_size']}\n{cp['root']}\n{cp['ts']}\n"
        f"{cp['key_id']}\n"
    ).encode()


def verify_checkpoint(cp: dict, keys: dict[str, Ed25519PublicKey]) -> dict:
    """The checkpoint, after its Ed25519 signature over the tree head verifies."""
    if cp.get("format") != "bastion-audit-checkpoint" or cp.get("version") != 1:
        raise Failed("not a bastion-audit-checkpoint v1 file")
    key = keys.get(cp["key_id"])
    if key is None:
        raise Failed(f"checkpoint signed by key {cp['key_id']!r}, which is not trusted")
    try:
        key.verify(base64.b64decode(cp["signature"], validate=True), checkpoint_message(cp))
    except InvalidSignature:
        raise Failed("checkpoint signature does not verify") from None
    return cp


def leaf_hash(entry: dict) -> bytes:
    """RFC 6962 leaf hash of one audit entry (as ``bastion audit show --json`` prints it)."""
    details = json.dumps(
        entry["details"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    fields = [str(entry["seq"]), entry["ts"], entry["actor"], entry["action"]]
    fields += [entry["resource"], entry["outcome"], details]
    return hashlib.sha256(b"\x00" + "\x00".join(fields).encode("utf-8")).digest()


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash: split at the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + merkle_root(leaves[:k]) + merkle_root(leaves[k:])).digest()


def check_entries(cp: dict, entries: list[dict]) -> None:
    """The first ``tree_size`` entries hash to the signed root: none edited, dropped,
    inserted or reordered up to the checkpoint. Each entry's seq is inside its leaf hash, so
    the export may list them in any order (``audit show`` lists newest first)."""
    size = cp["tree_size"]
    first = sorted(entries, key=lambda e: e["seq"])[:size]
    if [e["seq"] for e in first] != list(range(1, size + 1)):
        raise Failed(f"the entries are not seq 1..{size} in order")
    if merkle_root([leaf_hash(e) for e in first]).hex() != cp["root"]:
        raise Failed(f"the entries 1..{size} do not hash to the signed root")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=Path, required=True, help="JWK set of trusted keys")
    parser.add_argument("--statement", type=Path, action="append", default=[])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--entries", type=Path, help="bastion audit show --json output")
    args = parser.parse_args(argv)
    try:
        keys = load_keys(args.keys)
        for path in args.statement:
            try:
                statement = verify_statement(json.loads(path.read_text()), keys)
            except (Failed, KeyError, ValueError) as exc:
                raise Failed(f"{path}: {exc}") from None
            names = ", ".join(s["name"] for s in statement["subject"])
            print(f"OK statement {path}: {statement['predicateType']} about {names}")
        if args.checkpoint is not None:
            cp = verify_checkpoint(json.loads(args.checkpoint.read_text()), keys)
            print(f"OK checkpoint: {cp['tree_size']} entries, root {cp['root']}")
            if args.entries is not None:
                check_entries(cp, json.loads(args.entries.read_text())["entries"])
                print(f"OK audit entries 1..{cp['tree_size']} match the signed root")
    except (Failed, KeyError, ValueError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
