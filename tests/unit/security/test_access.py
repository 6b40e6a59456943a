"""Unit tests of bastion.security.access: principals, grants, policy, tokens, audit entries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.errors import AccessDenied, AuthError, ConfigError, NotFound
from bastion.security import access as access_module
from bastion.security import tokens as tokens_module
from bastion.security.access import ROLES, AccessControl, Identity, TokenInfo
from bastion.store.db import make_engine, migrate
from tests.helpers.audit import RecordingLog
from tests.helpers.rows import sealed_rows

# -- fixtures -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _engine(url: str) -> sa.Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return _engine("sqlite:///" + str(tmp_path / "m.db"))


@pytest.fixture
def sink(engine: sa.Engine) -> Iterator[RecordingLog]:
    with RecordingLog(engine) as log:  # the real audit log
        yield log


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ac(engine: sa.Engine, sink: RecordingLog, clock: Clock) -> AccessControl:
    return AccessControl(engine, sink, rows=sealed_rows(engine), clock=clock)


def _person(ac: AccessControl, name: str, role: str, rtype: str = "*", res: str = "*") -> None:
    ac.add_principal(name, actor="root")
    ac.grant(name, role, resource_type=rtype, resource=res, actor="root")


# -- principals ---------------------------------------------------------------------------


def test_principals_are_added_listed_and_disabled(ac: AccessControl) -> None:
    ac.add_principal("alice", actor="root")
    ac.add_principal("scorer-svc", "service", actor="root")
    ac.disable_principal("alice", actor="root")
    listed = {p.name: p for p in ac.list_principals()}
    assert listed["alice"].kind == "person" and listed["alice"].disabled
    assert listed["scorer-svc"].kind == "service" and not listed["scorer-svc"].disabled


def test_duplicate_principal_is_refused(ac: AccessControl) -> None:
    ac.add_principal("alice", actor="root")
    with pytest.raises(ConfigError, match="already exists"):
        ac.add_principal("alice", actor="root")


@pytest.mark.parametrize("name", ["", "Alice", "-lead", "a b", "a/b", "x" * 129, "é"])
def test_bad_principal_name_is_named_in_the_error(ac: AccessControl, name: str) -> None:
    with pytest.raises(ConfigError, match=r"^name: expected .*got"):
        ac.add_principal(name, actor="root")


def test_bad_kind_and_actor_are_refused(ac: AccessControl) -> None:
    with pytest.raises(ConfigError, match="kind: expected one of person, service, got 'robot'"):
        ac.add_principal("alice", "robot", actor="root")
    with pytest.raises(ConfigError, match="actor"):
        ac.add_principal("alice", actor="")


def test_unknown_principal_in_admin_commands_is_not_found(ac: AccessControl) -> None:
    with pytest.raises(NotFound):
        ac.disable_principal("ghost", actor="root")
    with pytest.raises(NotFound):
        ac.grant("ghost", "admin", actor="root")
    with pytest.raises(NotFound):
        ac.grants("ghost")
    with pytest.raises(NotFound):
        ac.list_tokens("ghost")
    with pytest.raises(NotFound):
        ac.create_token("ghost", "admin", actor="root")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(max_size=140))
def test_principal_names_follow_the_documented_pattern(name: str) -> None:
    valid = re.fullmatch(r"[a-z0-9][a-z0-9._@-]{0,127}", name) is not None
    try:
        access_module._check_principal(name, "name")
    except ConfigError as exc:
        assert not valid and str(exc).startswith("name: ")
    else:
        assert valid


# -- grants and policy --------------------------------------------------------------------


def test_grants_are_listed_and_revoked(ac: AccessControl) -> None:
    _person(ac, "bob", "consumer", "deployment", "fraud-v1")
    ac.grant("bob", "ml-engineer", resource_type="model", actor="root")
    assert [(g.role, g.resource_type, g.resource) for g in ac.grants("bob")] == [
        ("consumer", "deployment", "fraud-v1"),
        ("ml-engineer", "model", "*"),
    ]
    ac.revoke_grant("bob", "ml-engineer", resource_type="model", actor="root")
    assert [g.role for g in ac.grants()] == ["consumer"]
    with pytest.raises(NotFound):
        ac.revoke_grant("bob", "ml-engineer", resource_type="model", actor="root")


def test_duplicate_grant_is_refused(ac: AccessControl) -> None:
    _person(ac, "bob", "auditor")
    with pytest.raises(ConfigError, match="already holds"):
        ac.grant("bob", "auditor", actor="root")


@pytest.mark.parametrize(
    ("role", "rtype", "res", "field_name"),
    [
        ("root", "*", "*", "role"),
        ("admin", "pipeline", "*", "resource_type"),
        ("admin", "*", "fraud", "resource"),
        ("admin", "model", "", "resource"),
        ("admin", "model", "a b", "resource"),
    ],
)
def test_bad_grant_arguments_name_the_field(
    ac: AccessControl, role: str, rtype: str, res: str, field_name: str
) -> None:
    ac.add_principal("bob", actor="root")
    with pytest.raises(ConfigError, match=rf"^{field_name}: expected"):
        ac.grant("bob", role, resource_type=rtype, resource=res, actor="root")


def test_permissions_come_from_the_seeded_policy(ac: AccessControl) -> None:
    assert ac.permissions("admin") == frozenset({"*"})
    assert ac.permissions("consumer") == frozenset({"deployment:predict"})
    assert "model:approve" in ac.permissions("approver")
    assert "model:approve" not in ac.permissions("ml-engineer")
    assert all(ac.permissions(role) for role in ROLES)
    with pytest.raises(ConfigError, match="role"):
        ac.permissions("superuser")


# -- authorization ------------------------------------------------------------------------


def _identity(role: str, rtype: str = "*", res: str = "*") -> Identity:
    return Identity("p", role, rtype, res, None)


def test_admin_may_do_anything_anywhere(ac: AccessControl) -> None:
    ac.authorize(_identity("admin"), "keys:rotate")
    ac.authorize(_identity("admin"), "model:approve", resource_type="model", resource="m")


def test_scoped_identity_covers_only_its_resource(ac: AccessControl) -> None:
    one = _identity("consumer", "deployment", "fraud-v1")
    ac.authorize(one, "deployment:predict", resource_type="deployment", resource="fraud-v1")
    for rtype, res in [("deployment", "fraud-v2"), ("deployment", None), ("model", "fraud-v1")]:
        with pytest.raises(AccessDenied):
            ac.authorize(one, "deployment:predict", resource_type=rtype, resource=res)
    with pytest.raises(AccessDenied, match=r"\(global\)"):
        ac.authorize(one, "deployment:predict")


def test_type_wide_scope_covers_every_resource_of_that_type(ac: AccessControl) -> None:
    models = _identity("ml-engineer", "model", "*")
    ac.authorize(models, "model:register", resource_type="model", resource="any")
    ac.authorize(models, "model:read", resource_type="model")
    with pytest.raises(AccessDenied):
        ac.authorize(models, "dataset:read", resource_type="dataset", resource="adult")


def test_access_denied_names_principal_permission_and_resource(ac: AccessControl) -> None:
    who = Identity("carol", "consumer", "*", "*", "0123456789abcdef")
    with pytest.raises(AccessDenied) as info:
        ac.authorize(who, "model:approve", resource_type="model", resource="fraud")
    message = str(info.value)
    assert "'carol'" in message and "model:approve" in message and "model:fraud" in message


def test_authorize_refuses_a_resource_without_its_type(ac: AccessControl) -> None:
    with pytest.raises(ConfigError, match="resource_type"):
        ac.authorize(_identity("admin"), "model:read", resource="fraud")
    with pytest.raises(ConfigError, match="resource_type"):
        ac.authorize(_identity("admin"), "model:read", resource_type="*")


# -- tokens -------------------------------------------------------------------------------


def test_token_text_has_the_documented_shape_and_is_hidden_from_repr(ac: AccessControl) -> None:
    _person(ac, "alice", "admin")
    issued = ac.create_token("alice", "admin", actor="root")
    assert re.fullmatch(r"bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", issued.token)
    assert issued.token.split("_", 2)[1] == issued.id
    assert issued.token not in repr(issued)
    assert issued.expires == "2026-04-01T12:00:00+00:00"  # 90 days by default


def test_token_authenticates_to_its_scope_and_check_authorizes(ac: AccessControl) -> None:
    _person(ac, "svc", "consumer", "deployment", "fraud-v1")
    issued = ac.create_token(
        "svc", "consumer", resource_type="deployment", resource="fraud-v1", actor="root"
    )
    identity = ac.authenticate(issued.token)
    assert identity == Identity("svc", "consumer", "deployment", "fraud-v1", issued.id)
    assert (
        ac.check(
            issued.token, "deployment:predict", resource_type="deployment", resource="fraud-v1"
        )
        == identity
    )


def test_list_tokens_shows_no_secret_and_revoke_is_idempotent(ac: AccessControl) -> None:
    _person(ac, "alice", "auditor")
    issued = ac.create_token("alice", "auditor", description="quarterly audit", actor="root")
    (info,) = ac.list_tokens("alice")
    assert isinstance(info, TokenInfo)
    assert info.id == issued.id and info.description == "quarterly audit" and info.revoked is None
    assert not {"token", "secret", "secret_hash"} & set(TokenInfo.__dataclass_fields__)
    ac.revoke_token(issued.id, actor="root")
    revoked = ac.list_tokens()[0].revoked
    ac.revoke_token(issued.id, actor="root")
    assert ac.list_tokens()[0].revoked == revoked is not None


def test_revoke_unknown_or_malformed_token_id(ac: AccessControl) -> None:
    with pytest.raises(NotFound):
        ac.revoke_token("0123456789abcdef", actor="root")
    with pytest.raises(ConfigError, match="token_id"):
        ac.revoke_token("bst_0123", actor="root")


@pytest.mark.parametrize("expires_in", [timedelta(0), timedelta(seconds=-1), timedelta(days=366)])
def test_token_lifetime_is_bounded(ac: AccessControl, expires_in: timedelta) -> None:
    _person(ac, "alice", "admin")
    with pytest.raises(ConfigError, match="expires_in"):
        ac.create_token("alice", "admin", expires_in=expires_in, actor="root")


def test_naive_clock_is_refused(tmp_path: Path) -> None:
    engine = _engine("sqlite:///" + str(tmp_path / "m.db"))
    ac = AccessControl(
        engine, RecordingLog(engine), rows=sealed_rows(engine), clock=lambda: datetime(2026, 1, 1)
    )
    with pytest.raises(ConfigError, match="clock"):
        ac.authenticate("bst_0123456789abcdef_" + "A" * 43)


# -- audit entries ------------------------------------------------------------------------


def test_every_change_is_audited_without_secrets(ac: AccessControl, sink: RecordingLog) -> None:
    ac.add_principal("alice", actor="root")
    ac.grant("alice", "admin", actor="root")
    issued = ac.create_token("alice", "admin", actor="root")
    ac.revoke_token(issued.id, actor="root")
    ac.revoke_grant("alice", "admin", actor="root")
    ac.disable_principal("alice", actor="root")
    assert [(e[1], e[2], e[3]) for e in sink.recorded] == [
        ("principal.add", "principal:alice", "ok"),
        ("grant.add", "principal:alice", "ok"),
        ("token.create", f"token:{issued.id}", "ok"),
        ("token.revoke", f"token:{issued.id}", "ok"),
        ("grant.revoke", "principal:alice", "ok"),
        ("principal.disable", "principal:alice", "ok"),
    ]
    secret = issued.token.rsplit("_", 1)[1]
    assert all(e[0] == "root" for e in sink.recorded)
    assert secret not in repr(sink.recorded)


# -- both databases -----------------------------------------------------------------------


def test_token_life_cycle_on_each_database(database_url: str) -> None:
    clock = Clock()
    engine = _engine(database_url)
    ac = AccessControl(engine, RecordingLog(engine), rows=sealed_rows(engine), clock=clock)
    _person(ac, "svc", "consumer", "deployment", "fraud-v1")
    issued = ac.create_token(
        "svc", "consumer", resource_type="deployment", resource="fraud-v1", actor="root"
    )
    assert ac.authenticate(issued.token).token_id == issued.id
    ac.revoke_grant("svc", "consumer", resource_type="deployment", resource="fraud-v1", actor="r")
    with pytest.raises(AuthError):
        ac.authenticate(issued.token)
    ac.grant("svc", "consumer", resource_type="deployment", resource="fraud-v1", actor="root")
    with pytest.raises(AuthError):  # re-granting does not bring a revoked token back
        ac.authenticate(issued.token)
    fresh = ac.create_token(
        "svc", "consumer", resource_type="deployment", resource="fraud-v1", actor="root"
    )
    clock.now += timedelta(days=91)
    with pytest.raises(AuthError):
        ac.authenticate(fresh.token)


# -- the token lookup on the hot path -----------------------------------------------------


def test_raw_token_lookup_returns_what_sqlalchemy_returns(database_url: str) -> None:
    """The compiled, DBAPI-level lookup authenticate uses gives exactly the rows (values
    and types, booleans included) that executing the statement through SQLAlchemy gives,
    on SQLite and PostgreSQL, for a live, a revoked, a disabled and an unknown token."""
    engine = _engine(database_url)
    try:
        with RecordingLog(engine) as log:
            ac = AccessControl(engine, log, rows=sealed_rows(engine))
            for name in ("alice", "bob"):
                _person(ac, name, "consumer", "model", "m")
            live = ac.create_token(
                "alice", "consumer", resource_type="model", resource="m", actor="root"
            )
            gone = ac.create_token(
                "alice", "consumer", resource_type="model", resource="m", actor="root"
            )
            ac.revoke_token(gone.id, actor="root")
            off = ac.create_token(
                "bob", "consumer", resource_type="model", resource="m", actor="root"
            )
            ac.disable_principal("bob", actor="root")
            lookup = tokens_module.TokenLookup(engine)
            for token_id in (live.id, gone.id, off.id, "0" * 16):
                with engine.connect() as conn:
                    core = [
                        tuple(r) for r in conn.execute(tokens_module.LOOKUP, {"token_id": token_id})
                    ]
                raw = lookup(token_id)
                assert raw == core
                assert [tuple(map(type, r)) for r in raw] == [tuple(map(type, r)) for r in core]
            assert ac.authenticate(live.token).principal == "alice"
    finally:
        engine.dispose()
