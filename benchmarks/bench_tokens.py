"""The token check with authenticated rows vs. the bare lookup it replaced.

One process, one home, the same token, alternating rounds:

- **checked**: ``AccessControl.authenticate`` as the CLI, the Python API and the server call
  it — one indexed query for the token, its principal and every covering grant, the
  constant-time secret compare, every row's MAC checked (remembered once checked), the
  365-day lifetime cap, revocation, disabled principal, expiry;
- **bare**: what the check did before rows were authenticated — the token row joined to
  its principal and one covering grant by the same index, the same secret hash and
  constant-time compare, revocation, disabled and expiry; no MACs, no lifetime cap.

Goal: checked ≤ 1.10× bare (issue 10: the token check within 10% of its figure before).

    python benchmarks/bench_tokens.py [--calls 2000] [--rounds 7] [--smoke]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

GOAL = 1.10


def bare_check(engine: sa.Engine) -> Callable[[str], str]:
    """The token check as it was before rows were authenticated (commit dbe12b3), written
    against the same tables: the same query, secret check and decisions, without MACs."""
    from bastion.store.db import grants, principals, tokens

    g, t = grants.c, tokens.c
    covered = (
        sa.exists()
        .where(
            g.principal == t.principal,
            g.role == t.role,
            sa.or_(
                g.resource_type == "*",
                sa.and_(
                    g.resource_type == t.resource_type,
                    sa.or_(g.resource == "*", g.resource == t.resource),
                ),
            ),
        )
        .label("covered")
    )
    lookup = (
        sa.select(tokens, principals.c.disabled, covered)
        .join(principals, principals.c.name == t.principal)
        .where(t.id == sa.bindparam("token_id"))
    )
    shape = re.compile(r"bst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")

    def secret_hash(secret: str) -> bytes | None:
        raw = base64.urlsafe_b64decode(secret + "=")
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != secret:
            return None
        return hashlib.sha256(raw).digest()

    def check(token: str) -> str:
        now = datetime.now(UTC).astimezone(UTC)
        match = shape.fullmatch(token)
        if match is None:
            raise SystemExit("bare check: not a token")
        with engine.connect() as conn:
            row = conn.execute(lookup, {"token_id": match.group(1)}).first()
        presented = secret_hash(match.group(2))
        if row is None or presented is None:
            raise SystemExit("bare check: token not found")
        if not hmac.compare_digest(presented, row.secret_hash):
            raise SystemExit("bare check: wrong secret")
        if row.revoked is not None or row.disabled or not row.covered:
            raise SystemExit("bare check: token refused")
        if now >= datetime.fromisoformat(row.expires):
            raise SystemExit("bare check: token expired")
        return str(row.principal)

    return check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; goals not judged")
    args = parser.parse_args()
    if args.smoke:
        args.calls, args.rounds = 200, 2
    from bastion import Workspace

    with tempfile.TemporaryDirectory(prefix="bench-tokens-") as tmp:
        ws, issued = Workspace.init(
            Path(tmp) / "home", "a long benchmark passphrase", scrypt_log_n=14
        )
        try:
            token = issued.token
            checked = ws.access.authenticate
            bare = bare_check(ws.engine)
            if checked(token).principal != bare(token):
                print("FAIL: the two checks disagree on the principal")
                return 1
            for _ in range(200):  # warm both: statement caches, the MAC memo
                checked(token)
                bare(token)
            times: dict[str, list[float]] = {"checked": [], "bare": []}
            for _ in range(args.rounds):
                for name, fn in (("bare", bare), ("checked", checked)):
                    t0 = time.perf_counter()
                    for _ in range(args.calls):
                        fn(token)
                    times[name].append((time.perf_counter() - t0) / args.calls * 1e6)
        finally:
            ws.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["checked"] / med["bare"]
    for name in ("bare", "checked"):
        runs = ", ".join(f"{t:.1f}" for t in times[name])
        print(f"{name:8} median {med[name]:6.1f} µs per check  [{runs}]")
    print(f"checked / bare: {ratio:.3f} (goal <= {GOAL:.2f})")
    if args.smoke:
        print("smoke: goals not judged")
        return 0
    print("PASS" if ratio <= GOAL else "FAIL")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
