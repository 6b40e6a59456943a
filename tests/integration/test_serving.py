"""The real server (``bastion serve`` in a subprocess, uvicorn on loopback) against attacks.

A copy of the session's Adult home (module fixture ``ran``); one server serves it for the
role x token matrix and the request-limit cases; tests that break things (the audit sink, a
model blob) work on copies of the home with servers of their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import PASSPHRASE, Home, copy_home, run_cli

PREDICT = "/v1/models/adult-income/predict"
ISS, AUD = "https://idp.test", "bastion"
IDP_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROW = {
    "age": 39,
    "workclass": "State-gov",
    "education-num": 13,
    "capital-gain": 2174,
    "capital-loss": 0,
    "hours-per-week": 40,
    "marital-status": "Never-married",
    "occupation": "Adm-clerical",
    "relationship": "Not-in-family",
    "native-country": "United-States",
}
RICH = {
    **ROW,
    "age": 52,
    "education-num": 16,
    "capital-gain": 15024,
    "marital-status": "Married-civ-spouse",
    "occupation": "Exec-managerial",
    "relationship": "Husband",
    "hours-per-week": 60,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    log: Path
    verify: Any = False
    predicts: int = 0
    tokens: dict[str, str] = field(default_factory=dict)

    def post(self, body: Any, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        headers.update(kw.pop("headers", {}))
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.predicts += 1
        return httpx.post(
            self.url + kw.pop("path", PREDICT),
            content=content,
            headers=headers,
            verify=self.verify,
            timeout=30,
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start(home: Home, *args: str, tls: str = "--unsafe-no-tls", verify: Any = False) -> Server:
    port = free_port()
    log = home.path.parent / f"server-{port}.log"
    cmd = [sys.executable, "-m", "bastion", "serve", "adult-income", "--port", str(port)]
    cmd += [tls, *args] if tls else list(args)
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, env=home.env(), stdout=out, stderr=subprocess.STDOUT, text=True
        )
    scheme = "http" if tls == "--unsafe-no-tls" else "https"
    server = Server(proc, f"{scheme}://127.0.0.1:{port}", log, verify)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(server.url + "/healthz", verify=verify, timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.stop()
    raise AssertionError(f"server did not come up: {log.read_text()}")


@pytest.fixture(scope="module")
def ran(adult_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A copy of the session's Adult home (the pipeline ran once), this module's to change:
    it gets tokens, principals and servers' logs."""
    return copy_home(adult_home, tmp_path_factory.mktemp("serve") / "home")


def _token(ws: Any, principal: str, role: str, rtype: str = "*", res: str = "*", **kw: Any) -> Any:
    ws.access.add_principal(principal, "service", actor="admin")
    ws.access.grant(principal, role, resource_type=rtype, resource=res, actor="admin")
    return ws.access.create_token(
        principal,
        role,
        resource_type=rtype,
        resource=res,
        expires_in=kw.get("expires_in", timedelta(days=1)),
        actor="admin",
    )


@pytest.fixture(scope="module")
def server(ran: Home) -> Iterator[Server]:
    from bastion import Workspace

    jwks = ran.path.parent / "jwks.json"
    pub = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(IDP_KEY.public_key()))
    jwks.write_text(json.dumps({"keys": [{**pub, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    created = run_cli(
        ["token", "create", "--role", "consumer", "--deployment", "adult-income", "--json"],
        ran.env(),
    )
    assert created.code == 0, created.err
    tokens = {"consumer": created.json()["token"], "admin": ran.token}
    with Workspace.open(ran.path, PASSPHRASE, token=ran.token) as ws:
        tokens["other"] = _token(ws, "svc-other", "consumer", "deployment", "other-model").token
        tokens["auditor"] = _token(ws, "svc-auditor", "auditor").token
        revoked = _token(ws, "svc-revoked", "consumer", "deployment", "adult-income")
        tokens["revoked"] = revoked.token
        tokens["expired"] = _token(
            ws,
            "svc-expired",
            "consumer",
            "deployment",
            "adult-income",
            expires_in=timedelta(seconds=1),
        ).token
    srv = start(
        ran,
        "--max-body",
        "65536",
        "--max-batch",
        "100",
        "--token-cache-ttl",
        "0.5",
        "--jwks",
        str(jwks),
        "--issuer",
        ISS,
        "--audience",
        AUD,
        "--principal-budget",
        "oidc:batch-job=150",
    )
    srv.tokens = tokens
    # the revoked token works once (and is cached), then is revoked
    assert srv.post({"instances": [ROW]}, tokens["revoked"]).status_code == 200
    with Workspace.open(ran.path, PASSPHRASE, token=ran.token) as ws:
        ws.access.revoke_token(revoked.id, actor="admin")
    time.sleep(2.0)  # past the expired token's life and the revoked token's cache
    try:
        yield srv
    finally:
        srv.stop()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "alice",
        "iss": ISS,
        "aud": AUD,
        "exp": now + 300,
        "nbf": now - 5,
        "roles": ["consumer"],
        "bastion_deployments": ["adult-income"],
        **over,
    }


def forged_jwt() -> str:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "k1"})


def alg_none_jwt() -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode())
    return f"{header}.{b64(json.dumps(claims()).encode())}."


def key_confusion_jwt() -> str:
    pem = IDP_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(mac)}"


def test_predict_round_trip_returns_labels(server: Server) -> None:
    res = server.post({"instances": [ROW, RICH]}, server.tokens["consumer"])
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["model"] == "adult-income:1"
    assert body["predictions"] == ["<=50K", ">50K"]
    assert res.headers["cache-control"] == "no-store"


def test_jwt_consumer_may_predict(server: Server) -> None:
    token = jwt.encode(claims(), IDP_KEY, algorithm="RS256", headers={"kid": "k1"})
    res = server.post({"instances": [ROW]}, token)
    assert res.status_code == 200, res.text


def test_a_jwt_callers_own_budget_is_named_by_its_subject(server: Server) -> None:
    """``--principal-budget oidc:batch-job=150``: the caller whose token's subject is
    batch-job has 150 rows a day; another JWT subject has the auto budget (100). (Within
    the default burst of 200 rows: the token bucket never refuses here.)"""
    batch = jwt.encode(claims(sub="batch-job"), IDP_KEY, algorithm="RS256", headers={"kid": "k1"})
    codes = [server.post({"instances": [ROW] * n}, batch).status_code for n in (100, 50)]
    assert codes == [200, 200]
    over = server.post({"instances": [ROW]}, batch)
    assert over.status_code == 429 and "150 rows" in over.json()["error"]
    assert "--principal-budget" in over.json()["error"]
    other = jwt.encode(claims(sub="bob"), IDP_KEY, algorithm="RS256", headers={"kid": "k1"})
    assert server.post({"instances": [ROW] * 100}, other).status_code == 200
    refused = server.post({"instances": [ROW]}, other)
    assert refused.status_code == 429 and "100 rows" in refused.json()["error"]


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("none", 401),
        ("malformed", 401),
        ("wrong", 401),
        ("expired", 401),
        ("revoked", 401),
        ("forged-jwt", 401),
        ("alg-none-jwt", 401),
        ("hs256-key-confusion-jwt", 401),
        ("expired-jwt", 401),
        ("other-deployment", 403),
        ("auditor", 403),
        ("jwt-other-deployment", 403),
        ("consumer", 200),
        ("admin", 200),
    ],
)
def test_role_token_matrix(server: Server, who: str, status: int) -> None:
    t = server.tokens
    token = {
        "none": None,
        "malformed": "not-a-token",
        "wrong": "bst_0123456789abcdef_" + "A" * 43,
        "expired": t["expired"],
        "revoked": t["revoked"],
        "forged-jwt": forged_jwt(),
        "alg-none-jwt": alg_none_jwt(),
        "hs256-key-confusion-jwt": key_confusion_jwt(),
        "expired-jwt": jwt.encode(
            claims(exp=int(time.time()) - 120), IDP_KEY, algorithm="RS256", headers={"kid": "k1"}
        ),
        "other-deployment": t["other"],
        "auditor": t["auditor"],
        "jwt-other-deployment": jwt.encode(
            claims(bastion_deployments=["x"]), IDP_KEY, algorithm="RS256", headers={"kid": "k1"}
        ),
        "consumer": t["consumer"],
        "admin": t["admin"],
    }[who]
    res = server.post({"instances": [ROW]}, token)
    assert res.status_code == status, res.text
    if status == 401:
        assert res.headers["www-authenticate"].startswith("Bearer")
        assert res.json() == {"error": "unauthorized"}  # one bland message
    if status != 200:
        assert "predictions" not in res.json()


def test_unknown_model_is_404_only_after_authentication(server: Server) -> None:
    path = "/v1/models/nope/predict"
    assert server.post({"instances": [ROW]}, path=path).status_code == 401
    assert server.post({"instances": [ROW]}, server.tokens["admin"], path=path).status_code == 404


def test_oversized_body_is_413_even_when_content_length_lies(server: Server) -> None:
    big = json.dumps({"instances": [ROW] * 400}).encode()
    assert len(big) > 65536
    res = server.post(big, server.tokens["consumer"])
    assert res.status_code == 413

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    server.predicts += 1
    res = httpx.post(
        server.url + PREDICT,
        content=chunks(),  # chunked: no Content-Length to trust
        headers={"Authorization": f"Bearer {server.tokens['consumer']}"},
        timeout=30,
    )
    assert res.status_code == 413


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"instances": [ROW, {**ROW, "zodiac": "leo"}]}, "instances[1].zodiac"),
        ({"instances": [{**ROW, "age": "old"}]}, "instances[0].age: expected an integer"),
        ({"instances": [{**ROW, "age": 200}]}, "instances[0].age: expected a number in [17, 90]"),
        ({"instances": [{**ROW, "workclass": "Pirate"}]}, "instances[0].workclass"),
        ({"instances": [{k: v for k, v in ROW.items() if k != "age"}]}, "instances[0].age"),
        ({"instances": [ROW] * 101}, "at most 100"),
        ({"instances": []}, "non-empty"),
    ],
    ids=[
        "unknown-field",
        "wrong-type",
        "out-of-range",
        "bad-category",
        "missing",
        "batch",
        "empty",
    ],
)
def test_schema_violations_are_422_naming_the_field(
    server: Server, body: dict[str, Any], needle: str
) -> None:
    res = server.post(body, server.tokens["consumer"])
    assert res.status_code == 422, res.text
    assert needle in res.json()["error"]


def test_nan_and_infinity_are_422(server: Server) -> None:
    for literal in (b"NaN", b"Infinity", b"1e999"):
        raw = json.dumps({"instances": [{**ROW, "age": 0}]}).encode().replace(b"0}", literal + b"}")
        res = server.post(raw, server.tokens["consumer"])
        assert res.status_code == 422, (literal, res.text)


def test_admin_routes_need_admin_beyond_loopback_and_publish_the_schema(server: Server) -> None:
    # loopback clients may read them without a token
    doc = httpx.get(server.url + "/openapi.json", timeout=10).json()
    instance = doc["components"]["schemas"]["adult_income_instance"]
    assert instance["properties"]["age"] == {"type": "integer", "minimum": 17, "maximum": 90}
    assert "Private" in instance["properties"]["workclass"]["enum"]
    assert instance["additionalProperties"] is False
    metrics = httpx.get(server.url + "/metrics", timeout=10)
    assert metrics.status_code == 200 and "bastion_requests_total" in metrics.text
    assert httpx.get(server.url + "/readyz", timeout=10).json()["ready"] is True


def test_audit_entries_equal_predict_requests(server: Server, ran: Home) -> None:
    """Runs last on the shared server: stop it (graceful), then count the entries."""
    from bastion import Workspace

    made = server.predicts
    assert server.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a graceful shutdown
    assert "Application shutdown complete" in server.log.read_text()
    with Workspace.open(ran.path, PASSPHRASE, token=ran.token) as ws, ws.engine.connect() as conn:
        import sqlalchemy as sa

        rows = conn.execute(
            sa.text("SELECT actor, outcome, details FROM audit_log WHERE action = 'model.predict'")
        ).all()
    assert len(rows) == made
    decisions = {json.loads(r.details)["decision"] for r in rows}
    assert {"ok", "unauthenticated", "forbidden", "too_large", "invalid"} <= decisions
    assert any(r.actor == "anonymous" for r in rows)
    assert any(r.actor == "oidc:alice" for r in rows)
    ok = [json.loads(r.details) for r in rows if r.outcome == "ok"]
    assert all(len(d["input_sha256"]) == 64 and d["model"] == "adult-income:1" for d in ok)


def test_broken_audit_sink_gives_503_and_no_prediction(ran: Home, tmp_path: Path) -> None:
    home = copy_home(ran, tmp_path / "home")
    srv = start(home)
    try:
        assert srv.post({"instances": [ROW]}, ran.token).status_code == 200
        db = home.path / "bastion.db"
        with sqlite3.connect(db) as conn:
            conn.execute("ALTER TABLE audit_log RENAME TO audit_log_gone")
        res = srv.post({"instances": [ROW]}, ran.token)
        assert res.status_code == 503
        assert "predictions" not in res.json()
        assert httpx.get(srv.url + "/readyz", timeout=10).status_code in (200, 503)
        with sqlite3.connect(db) as conn:
            conn.execute("ALTER TABLE audit_log_gone RENAME TO audit_log")
    finally:
        srv.stop()


def test_self_signed_tls_works_with_its_certificate(ran: Home, tmp_path: Path) -> None:
    home = copy_home(ran, tmp_path / "home")
    cert = home.path / "tls" / "localhost.crt"
    port_srv = start(home, tls="--tls-self-signed", verify=False)
    try:
        assert cert.is_file()
        assert (home.path / "tls" / "localhost.key").stat().st_mode & 0o777 == 0o600
        res = httpx.post(
            port_srv.url + PREDICT,
            json={"instances": [ROW]},
            headers={"Authorization": f"Bearer {ran.token}"},
            verify=ssl.create_default_context(cafile=str(cert)),
            timeout=30,
        )
        assert res.status_code == 200 and res.json()["predictions"] == ["<=50K"]
    finally:
        port_srv.stop()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--unsafe-no-tls", "--host", "0.0.0.0"], "loopback"),  # noqa: S104 - refused on purpose
        ([], "--tls-self-signed"),
    ],
    ids=["no-tls-beyond-loopback", "no-tls-choice"],
)
def test_unsafe_tls_choices_exit_2(ran: Home, args: list[str], needle: str) -> None:
    res = run_cli(["serve", "adult-income", *args], ran.env(), timeout=60)
    assert res.code == 2, res.err
    assert needle in res.err


def test_tampered_model_blob_refuses_to_start(ran: Home, tmp_path: Path) -> None:
    home = copy_home(ran, tmp_path / "home")
    listed = run_cli(["models", "list", "--json"], home.env()).json()["models"]
    digest = listed[0]["digest"]
    blob = home.path / "objects" / digest[:2] / digest
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x08
    blob.write_bytes(bytes(data))
    res = run_cli(["serve", "adult-income", "--unsafe-no-tls", "--port", "1"], home.env())
    assert res.code != 0
    assert "refusing to serve adult-income" in res.err
    assert "Traceback" not in res.err
