"""Attacks on API tokens: each one is refused, with one bland message, leaving no trace.

Every authentication failure must raise the same ``AuthError("invalid or expired token")``
so an attacker learns nothing about which part was wrong; every authorization failure is
``AccessDenied``; a failed audit write means nothing happened.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.errors import AccessDenied, AuditError, AuthError, ConfigError
from bastion.security.access import AccessControl, IssuedToken
from bastion.store.db import grants, principals, tokens
from tests.helpers.rows import sealed_rows

if TYPE_CHECKING:
    from tests.helpers.audit import RecordingLog
    from tests.security.conftest import FakeClock

BLAND = "invalid or expired token"


def _refused(access: AccessControl, token: str) -> None:
    with pytest.raises(AuthError) as info:
        access.authenticate(token)
    assert str(info.value) == BLAND


def _service(
    access: AccessControl, name: str = "scorer", deployment: str = "fraud-v1"
) -> IssuedToken:
    access.add_principal(name, "service", actor="root")
    access.grant(name, "consumer", resource_type="deployment", resource=deployment, actor="root")
    return access.create_token(
        name, "consumer", resource_type="deployment", resource=deployment, actor="root"
    )


def _split(token: str) -> tuple[str, str]:
    _, token_id, secret = token.split("_", 2)
    return token_id, secret


# -- authentication -----------------------------------------------------------------------


def test_expired_token_is_refused(access: AccessControl, clock: FakeClock) -> None:
    access.add_principal("alice", actor="root")
    access.grant("alice", "auditor", actor="root")
    issued = access.create_token("alice", "auditor", expires_in=timedelta(hours=1), actor="root")
    clock.advance(timedelta(minutes=59))
    access.authenticate(issued.token)
    clock.advance(timedelta(minutes=1))
    _refused(access, issued.token)


def test_revoked_token_is_refused(access: AccessControl) -> None:
    issued = _service(access)
    access.revoke_token(issued.id, actor="incident-responder")
    _refused(access, issued.token)


def test_wrong_secret_is_refused(access: AccessControl) -> None:
    issued = _service(access)
    token_id, secret = _split(issued.token)
    flipped = ("B" if secret[0] == "A" else "A") + secret[1:]
    _refused(access, f"bst_{token_id}_{flipped}")


def test_non_canonical_encoding_of_the_right_secret_is_refused(access: AccessControl) -> None:
    # 43 base64url characters carry 258 bits; the last 2 are padding. Setting them gives a
    # different text that decodes to the same 32 bytes: it must not be a second valid token.
    issued = _service(access)
    token_id, secret = _split(issued.token)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = secret[:-1] + alphabet[alphabet.index(secret[-1]) | 1]
    assert base64.urlsafe_b64decode(twin + "=") == base64.urlsafe_b64decode(secret + "=")
    _refused(access, f"bst_{token_id}_{twin}")


def test_unknown_token_id_is_refused(access: AccessControl) -> None:
    issued = _service(access)
    _, secret = _split(issued.token)
    _refused(access, f"bst_{'0' * 16}_{secret}")


def test_secret_swapped_onto_another_principals_token_id_is_refused(
    access: AccessControl,
) -> None:
    mine = _service(access, "mallory-svc", "sandbox")
    theirs = _service(access, "scorer", "fraud-v1")
    _, my_secret = _split(mine.token)
    their_id, _ = _split(theirs.token)
    _refused(access, f"bst_{their_id}_{my_secret}")


def test_disabled_principals_tokens_are_refused(access: AccessControl) -> None:
    issued = _service(access)
    access.disable_principal("scorer", actor="root")
    _refused(access, issued.token)


def test_revoked_grant_kills_its_tokens_and_regranting_does_not_revive_them(
    access: AccessControl, sink: RecordingLog
) -> None:
    issued = _service(access)
    access.revoke_grant(
        "scorer", "consumer", resource_type="deployment", resource="fraud-v1", actor="root"
    )
    _refused(access, issued.token)
    assert sink.recorded[-1][4]["tokens_revoked"] == [issued.id]
    access.grant("scorer", "consumer", resource_type="deployment", resource="fraud-v1", actor="r")
    _refused(access, issued.token)


def test_token_outlives_a_revoked_grant_only_while_another_grant_covers_it(
    access: AccessControl,
) -> None:
    access.add_principal("bob", actor="root")
    access.grant("bob", "ml-engineer", resource_type="model", actor="root")
    access.grant("bob", "ml-engineer", resource_type="model", resource="fraud", actor="root")
    issued = access.create_token(
        "bob", "ml-engineer", resource_type="model", resource="fraud", actor="root"
    )
    access.revoke_grant("bob", "ml-engineer", resource_type="model", resource="fraud", actor="r")
    assert access.authenticate(issued.token).principal == "bob"


def test_grant_deleted_behind_our_back_still_kills_the_token(
    access: AccessControl, engine: sa.Engine
) -> None:
    # Defence in depth: authenticate() itself checks that a grant still covers the token.
    issued = _service(access)
    with engine.begin() as conn:
        conn.execute(sa.delete(grants))
    _refused(access, issued.token)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(
        st.text(max_size=120),
        st.from_regex(r"bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", fullmatch=True),
        st.from_regex(r"bst_[0-9a-fA-F]{0,20}_[A-Za-z0-9_=+/-]{0,50}", fullmatch=True),
        st.binary(max_size=80).map(lambda b: "bst_" + b.hex()),
    )
)
def test_malformed_or_guessed_tokens_are_refused(module_access: AccessControl, text: str) -> None:
    _refused(module_access, text)


def test_every_failure_reads_the_same(access: AccessControl, clock: FakeClock) -> None:
    good = _service(access)
    revoked = _service(access, "old", "fraud-v0")
    access.revoke_token(revoked.id, actor="root")
    token_id, secret = _split(good.token)
    attempts = [
        "",
        "Bearer " + good.token,
        good.token + "x",
        good.token.upper(),
        f"bst_{'f' * 16}_{secret}",
        f"bst_{token_id}_{'A' * 43}",
        revoked.token,
    ]
    messages = set()
    for attempt in attempts:
        with pytest.raises(AuthError) as info:
            access.authenticate(attempt)
        messages.add(str(info.value))
    clock.advance(timedelta(days=91))
    with pytest.raises(AuthError) as info:
        access.authenticate(good.token)
    messages.add(str(info.value))
    assert messages == {BLAND}


# -- constant-time path -------------------------------------------------------------------


def _spy_compare(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    calls: list[tuple[bytes, bytes]] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((bytes(a), bytes(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


def test_unknown_id_still_hashes_and_compares(
    access: AccessControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = _service(access)
    _, secret = _split(issued.token)
    calls = _spy_compare(monkeypatch)
    _refused(access, f"bst_{'0' * 16}_{secret}")
    ((presented, stored),) = calls
    assert presented == hashlib.sha256(base64.urlsafe_b64decode(secret + "=")).digest()
    assert len(stored) == 32 and stored != presented


def test_known_and_unknown_ids_do_the_same_work(
    access: AccessControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = _service(access)
    token_id, secret = _split(issued.token)
    wrong = ("B" if secret[0] == "A" else "A") + secret[1:]
    calls = _spy_compare(monkeypatch)
    _refused(access, f"bst_{token_id}_{wrong}")
    _refused(access, f"bst_{'0' * 16}_{wrong}")
    _refused(access, "not a token at all")
    # a known id's rows are also checked against their MACs (security.rows); count the
    # secret comparisons: one per attempt, whatever the id
    hashed = {
        hashlib.sha256(base64.urlsafe_b64decode(wrong + "=")).digest(),
        hashlib.sha256(b"").digest(),
    }
    calls = [c for c in calls if c[0] in hashed]
    assert len(calls) == 3
    assert calls[0][0] == calls[1][0]  # the same secret hashed either way
    assert all(len(a) == len(b) == 32 for a, b in calls)


# -- storage ------------------------------------------------------------------------------


def test_token_is_never_stored_in_clear(
    access: AccessControl, engine: sa.Engine, tmp_path: Path
) -> None:
    issued = _service(access)
    _, secret = _split(issued.token)
    raw = base64.urlsafe_b64decode(secret + "=")
    with engine.connect() as conn:
        row = conn.execute(sa.select(tokens).where(tokens.c.id == issued.id)).one()
    assert row.secret_hash == hashlib.sha256(raw).digest()
    for value in row:
        assert secret not in str(value)
        assert value != raw
    engine.dispose()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("m.db*"))
    assert issued.id.encode() in on_disk  # we are looking at the right files
    for needle in (secret.encode(), raw, issued.token.encode()):
        assert needle not in on_disk


# -- authorization ------------------------------------------------------------------------


def test_token_for_one_deployment_cannot_query_another(access: AccessControl) -> None:
    issued = _service(access, "scorer", "fraud-v1")
    access.check(
        issued.token, "deployment:predict", resource_type="deployment", resource="fraud-v1"
    )
    with pytest.raises(AccessDenied, match="deployment:fraud-v2"):
        access.check(
            issued.token, "deployment:predict", resource_type="deployment", resource="fraud-v2"
        )


def test_wrong_role_for_a_permission_is_denied(access: AccessControl) -> None:
    issued = _service(access)
    for permission in ("model:register", "audit:read", "keys:rotate", "*"):
        with pytest.raises(AccessDenied) as info:
            access.check(issued.token, permission, resource_type="deployment", resource="fraud-v1")
        assert issued.token not in str(info.value)
        assert "'scorer'" in str(info.value) and permission in str(info.value)


@pytest.mark.parametrize(
    ("role", "rtype", "res"),
    [
        ("admin", "*", "*"),  # another role
        ("consumer", "*", "*"),  # wider than the grant
        ("consumer", "deployment", "*"),  # every deployment, not just one
        ("consumer", "deployment", "fraud-v2"),  # another deployment
        ("consumer", "model", "fraud-v1"),  # another type
    ],
)
def test_token_beyond_the_principals_grants_is_refused(
    access: AccessControl, role: str, rtype: str, res: str
) -> None:
    _service(access, "scorer", "fraud-v1")
    with pytest.raises(AccessDenied, match="cannot exceed"):
        access.create_token("scorer", role, resource_type=rtype, resource=res, actor="root")
    assert len(access.list_tokens()) == 1


def test_disabled_principal_gets_no_new_token(access: AccessControl) -> None:
    _service(access)
    access.disable_principal("scorer", actor="root")
    with pytest.raises(AccessDenied, match="disabled"):
        access.create_token(
            "scorer", "consumer", resource_type="deployment", resource="fraud-v1", actor="root"
        )


# -- audit fails closed -------------------------------------------------------------------


def test_audit_failure_means_nothing_happens(
    access: AccessControl, engine: sa.Engine, clock: FakeClock, sink: RecordingLog
) -> None:
    issued = _service(access)
    broken = AccessControl(engine, sink, rows=sealed_rows(engine), clock=clock)
    sink.fail = True  # the real log, its table gone: every write fails

    def snapshot() -> tuple[object, ...]:
        with engine.connect() as conn:
            return tuple(
                tuple(conn.execute(sa.select(t).order_by(*t.primary_key.columns)).all())
                for t in (principals, grants, tokens)
            )

    before = snapshot()
    attempts: list[Callable[[], object]] = [
        lambda: broken.add_principal("eve", actor="root"),
        lambda: broken.grant("scorer", "admin", actor="root"),
        lambda: broken.create_token(
            "scorer", "consumer", resource_type="deployment", resource="fraud-v1", actor="root"
        ),
        lambda: broken.revoke_token(issued.id, actor="root"),
        lambda: broken.revoke_grant(
            "scorer", "consumer", resource_type="deployment", resource="fraud-v1", actor="root"
        ),
        lambda: broken.disable_principal("scorer", actor="root"),
    ]
    for attempt in attempts:
        with pytest.raises(AuditError):
            attempt()
    assert snapshot() == before
    sink.fail = False
    assert access.authenticate(issued.token).principal == "scorer"


def test_a_failed_change_leaves_no_audit_entry_and_no_change(
    access: AccessControl, engine: sa.Engine, sink: RecordingLog
) -> None:
    access.add_principal("alice", actor="root")
    before = sink.recorded
    with engine.begin() as conn:  # a trigger makes the change itself fail
        conn.exec_driver_sql(
            "CREATE TRIGGER no_grants BEFORE INSERT ON grants"
            " BEGIN SELECT RAISE(ABORT, 'read-only'); END"
        )
    with pytest.raises(ConfigError, match="concurrent change"):
        access.grant("alice", "admin", actor="root")
    assert sink.recorded == before  # change and entry commit together or not at all
    assert access.grants("alice") == []
