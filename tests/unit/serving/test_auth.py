"""Bearer tokens and OIDC/JWT: forged, unsigned, key-confused, expired tokens are refused."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bastion.errors import AccessDenied, AuthError, ConfigError
from bastion.serving.auth import Authenticator, JwtSettings, JwtVerifier

ISS, AUD = "https://idp.example", "bastion-serving"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(key: Any, kid: str) -> dict[str, Any]:
    algo = (
        jwt.algorithms.RSAAlgorithm
        if isinstance(key, rsa.RSAPrivateKey)
        else jwt.algorithms.ECAlgorithm
    )
    doc: dict[str, Any] = json.loads(algo.to_jwk(key.public_key()))
    doc.update(kid=kid, use="sig", alg="RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
    return doc


@pytest.fixture
def verifier(tmp_path: Path) -> JwtVerifier:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(RSA_KEY, "r1"), _jwk(EC_KEY, "e1")]}))
    return JwtVerifier(JwtSettings(str(path), ISS, AUD))


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "alice",
        "iss": ISS,
        "aud": AUD,
        "exp": now + 300,
        "nbf": now - 10,
        "roles": ["consumer"],
        "bastion_deployments": ["adult-income"],
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = RSA_KEY, alg: str = "RS256", kid: str = "r1") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_valid_rs256_and_es256_tokens_name_the_caller(verifier: JwtVerifier) -> None:
    caller = verifier.verify(sign(claims()))
    assert caller.principal == "oidc:alice" and caller.roles == ("consumer",)
    assert caller.deployments == frozenset({"adult-income"})
    assert verifier.verify(sign(claims(), EC_KEY, "ES256", "e1")).via == "jwt"


@pytest.mark.parametrize(
    "over",
    [
        {"exp": int(time.time()) - 120},
        {"nbf": int(time.time()) + 30 * 86400},  # far enough that collection time does not matter
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"exp": None},
        {"nbf": None},
        {"sub": None},
        {"sub": "bad\nname"},
        {"roles": "admin"},
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "wrong-audience",
        "wrong-issuer",
        "no-exp",
        "no-nbf",
        "no-sub",
        "control-char-sub",
        "roles-not-a-list",
    ],
)
def test_bad_claims_are_refused(verifier: JwtVerifier, over: dict[str, Any]) -> None:
    with pytest.raises(AuthError, match=r"^invalid or expired token$"):
        verifier.verify(sign(claims(**over)))


def test_forged_signature_is_refused(verifier: JwtVerifier) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError):
        verifier.verify(sign(claims(), other))


def test_alg_none_is_refused(verifier: JwtVerifier) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "r1"}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}."
    with pytest.raises(AuthError):
        verifier.verify(token)


def test_hs256_signed_with_the_public_key_is_refused(verifier: JwtVerifier) -> None:
    """RSA/HMAC key confusion: the attacker HMACs with the PEM of our public key."""
    import hashlib
    import hmac

    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "r1"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(AuthError):
        verifier.verify(f"{header}.{body}.{b64(mac)}")


def test_es256_header_on_an_rsa_kid_is_refused(verifier: JwtVerifier) -> None:
    with pytest.raises(AuthError):
        verifier.verify(sign(claims(), EC_KEY, "ES256", "r1"))


def test_unknown_kid_is_refused(verifier: JwtVerifier) -> None:
    with pytest.raises(AuthError):
        verifier.verify(sign(claims(), kid="nope"))


def test_jwks_without_usable_keys_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}))
    with pytest.raises(ConfigError):
        JwtVerifier(JwtSettings(str(path), ISS, AUD))
    with pytest.raises(ConfigError, match="https"):
        JwtVerifier(JwtSettings("http://idp.example/jwks", ISS, AUD))


@pytest.mark.parametrize(
    "header",
    [None, b"", b"Basic abc", b"Bearer", b"Bearer a b", b"bearer \xff", b"Bearer " + b"x" * 9000],
)
def test_malformed_authorization_headers_are_refused(header: bytes | None) -> None:
    with pytest.raises(AuthError):
        Authenticator.bearer(header)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_api_token_cache_lasts_at_most_the_ttl(workspace: Any) -> None:
    from datetime import timedelta

    ws = workspace
    ws.access.add_principal("svc", "service", actor="admin")
    ws.access.grant("svc", "consumer", resource_type="deployment", resource="d1", actor="admin")
    issued = ws.access.create_token(
        "svc",
        "consumer",
        resource_type="deployment",
        resource="d1",
        expires_in=timedelta(days=1),
        actor="admin",
    )
    clock = Clock()
    auth = Authenticator(ws, cache_ttl=5.0, clock=clock)

    async def check() -> str:
        caller, key = await auth.authenticate(issued.token)
        await auth.authorize(caller, key, "deployment:predict", "deployment", "d1")
        return caller.principal

    assert asyncio.run(check()) == "svc"
    ws.access.revoke_token(issued.id, actor="admin")
    clock.now += 4.9
    assert asyncio.run(check()) == "svc"  # still cached: revocation takes up to 5 s
    clock.now += 0.2
    with pytest.raises(AuthError):
        asyncio.run(check())


def test_api_token_scoped_to_another_deployment_is_denied(workspace: Any) -> None:
    auth = Authenticator(workspace, cache_ttl=0)

    async def check() -> None:
        caller, key = await auth.authenticate(workspace.admin_token)
        await auth.authorize(caller, key, "serve:admin")  # admin holds everything
        ws = workspace
        from datetime import timedelta

        ws.access.add_principal("c", "service", actor="admin")
        ws.access.grant("c", "consumer", resource_type="deployment", resource="d1", actor="admin")
        t = ws.access.create_token(
            "c",
            "consumer",
            resource_type="deployment",
            resource="d1",
            expires_in=timedelta(days=1),
            actor="admin",
        )
        caller, key = await auth.authenticate(t.token)
        with pytest.raises(AccessDenied):
            await auth.authorize(caller, key, "deployment:predict", "deployment", "d2")
        with pytest.raises(AccessDenied):
            await auth.authorize(caller, key, "serve:admin")

    asyncio.run(check())


def test_jwt_roles_and_deployments_claims_decide(workspace: Any, verifier: JwtVerifier) -> None:
    auth = Authenticator(workspace, jwt_verifier=verifier, cache_ttl=0)

    async def allowed(token: str, permission: str, deployment: str | None) -> bool:
        caller, key = await auth.authenticate(token)
        try:
            rtype = "deployment" if deployment else None
            await auth.authorize(caller, key, permission, rtype, deployment)
        except AccessDenied:
            return False
        return True

    consumer = sign(claims())
    assert asyncio.run(allowed(consumer, "deployment:predict", "adult-income"))
    assert not asyncio.run(allowed(consumer, "deployment:predict", "other"))
    assert not asyncio.run(allowed(consumer, "serve:admin", None))
    auditor = sign(claims(roles=["auditor"]))
    assert not asyncio.run(allowed(auditor, "deployment:predict", "adult-income"))
    bogus = sign(claims(roles=["superuser"]))
    assert not asyncio.run(allowed(bogus, "deployment:predict", "adult-income"))
    admin = sign(claims(roles=["admin"], bastion_deployments=None))
    assert asyncio.run(allowed(admin, "serve:admin", None))


def test_a_jwt_is_not_accepted_when_oidc_is_not_configured(workspace: Any) -> None:
    auth = Authenticator(workspace)
    with pytest.raises(AuthError):
        asyncio.run(auth.authenticate(sign(claims())))


def test_cache_ttl_above_five_seconds_is_refused(workspace: Any) -> None:
    with pytest.raises(ConfigError):
        Authenticator(workspace, cache_ttl=60)
