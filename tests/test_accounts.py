"""Accounts and authentication on both record stores: passwords, throttling, API keys, refresh tokens,
case assignments, the token endpoint, administration, and bearer tokens (Locard's and OpenID Connect)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from api import deps
from api.principal import Principal
from api.problems import install_problem_handlers
from api.routes import admin, auth
from api.security import AuthenticationFailed, authenticate, issue_access_token
from storage import accounts, apikeys, records
from storage.accounts import LoginRefused, RefreshToken, User
from storage.apikeys import ApiKey
from storage.logins import LoginThrottle
from storage.roles import ADMINISTRATOR, CASE_SYSTEM, FORENSIC_EXAMINER, INVESTIGATOR, SUPERVISOR
from storage.settings import Settings
from tests.throttle_clock import Clock, attempt_login

PASSWORD = "Correct-Horse-42"
SECRET = "a3f9c1e7b2d84f6a9e0c5b1d7f3a8e2c"
ISSUER = "https://idp.police.example/realms/locard"
UNSUPPORTED = "grant_type is password or refresh_token"


def _settings(database_url: str = "sqlite://", **extra: Any) -> Settings:
    values: dict[str, Any] = {"environment": "test", "database_url": database_url, "token_secret": SECRET,
                              "audit_key": "b7e2d9a4c1f86e3b0a5d2c9f7e4b1a8d", "login_max_failures": 3,
                              "login_window_seconds": 60, **extra}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def cfg(database_url: str) -> Settings:
    return _settings(database_url)


def _user(factory: sessionmaker[Session], username: str = "Alice", roles: tuple[str, ...] = (INVESTIGATOR,),
          password: str | None = PASSWORD) -> User:
    with factory() as session, session.begin():
        return accounts.create_user(session, username=username, password=password, roles=roles,
                                    display_name=username.title(), created_by="admin")


def _login(factory: sessionmaker[Session], cfg: Settings, username: str = "alice", password: str = PASSWORD,
           client: str = "10.0.0.1") -> User | LoginRefused:
    return attempt_login(factory, cfg, username=username, password=password, client=client)


# --- users and passwords ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "why"), [("Short-1", "12 characters"), ("alllowercaseletters", "two kinds"),
                                               ("123456789012345", "two kinds"), ("ALICE", "12 characters"),
                                               ("x" * 1025, "at most")])
def test_password_policy(password: str, why: str) -> None:
    with pytest.raises(accounts.WeakPassword, match=why):
        accounts.check_password_policy(password, username="alice")
    accounts.check_password_policy("lowercase-and-dash", username="alice")
    with pytest.raises(accounts.WeakPassword, match="user name"):
        accounts.check_password_policy("Alice.Example1", username="alice.example1")


def test_create_user(factory: sessionmaker[Session]) -> None:
    user = _user(factory, "Alice", roles=(SUPERVISOR, INVESTIGATOR, INVESTIGATOR))
    assert user.username == "alice" and user.roles == [INVESTIGATOR, SUPERVISOR] and user.active
    assert user.password_hash is not None and user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    with factory() as session, session.begin():
        with pytest.raises(accounts.DuplicateUser):
            accounts.create_user(session, username="ALICE", password=None, roles=[INVESTIGATOR], created_by="x")
        with pytest.raises(accounts.UnknownRole, match="superuser"):
            accounts.create_user(session, username="bob", password=None, roles=["superuser"], created_by="x")
        with pytest.raises(accounts.UnknownRole):
            accounts.create_user(session, username="bob", password=None, roles=[], created_by="x")
        with pytest.raises(accounts.WeakPassword):
            accounts.create_user(session, username="bob", password="password", roles=[INVESTIGATOR], created_by="x")
        with pytest.raises(accounts.InvalidUsername):
            accounts.create_user(session, username="../bob", password=None, roles=[INVESTIGATOR], created_by="x")
        system = accounts.create_user(session, username="rms", password=None, roles=[CASE_SYSTEM], created_by="x")
        assert system.password_hash is None
        assert [u.username for u in accounts.list_users(session)] == ["alice", "rms"]
        assert accounts.get_user_by_name(session, username=" Alice ") is not None


# --- logins and throttling ----------------------------------------------------------------------------------------


def test_verify_password_and_refusals(factory: sessionmaker[Session], cfg: Settings) -> None:
    _user(factory)
    _user(factory, "rms", roles=(CASE_SYSTEM,), password=None)
    assert isinstance(_login(factory, cfg, username="ALICE"), User)
    refused = _login(factory, cfg, password="Wrong-password-1")
    assert isinstance(refused, LoginRefused) and refused.retry_after is None
    unknown = _login(factory, cfg, username="nobody", client="10.0.0.2")
    assert isinstance(unknown, LoginRefused) and str(unknown) == str(refused)  # no hint that the user is unknown
    assert isinstance(_login(factory, cfg, username="rms", password="", client="10.0.0.3"), LoginRefused)
    with factory() as session:
        counted = dict(session.execute(select(LoginThrottle.key, LoginThrottle.failures)).tuples().all())
    assert counted == {"user:alice": 1, "user:nobody": 1, "user:rms": 1, "client:10.0.0.1": 1,
                       "client:10.0.0.2": 1, "client:10.0.0.3": 1}  # kept although the attempts raised
    with factory() as session, session.begin():
        user = accounts.get_user_by_name(session, username="alice")
        assert user is not None
        accounts.deactivate_user(session, user=user)
    inactive = _login(factory, cfg)
    assert isinstance(inactive, LoginRefused) and "deactivated" in inactive.reason


def test_throttle_per_user_refuses_even_the_right_password(factory: sessionmaker[Session], cfg: Settings,
                                                            clock: Clock) -> None:
    _user(factory)
    for n in range(3):
        assert isinstance(_login(factory, cfg, password=f"Wrong-password-{n}", client=f"10.0.1.{n}"), LoginRefused)
    throttled = _login(factory, cfg, client="10.0.2.1")
    assert isinstance(throttled, LoginRefused) and throttled.retry_after == 1  # the first backoff step
    # The wait passes: the right password is accepted and clears the account's count.
    clock.advance(1)
    assert isinstance(_login(factory, cfg), User)
    with factory() as session:
        row = session.get(LoginThrottle, "user:alice")
        assert row is not None and row.failures == 0 and row.blocked_until is None


def test_success_clears_the_users_failures(factory: sessionmaker[Session], cfg: Settings, clock: Clock) -> None:
    _user(factory)
    for _ in range(2):
        assert isinstance(_login(factory, cfg, password="Wrong-password-1", client="10.0.3.1"), LoginRefused)
    assert isinstance(_login(factory, cfg, client="10.0.3.2"), User)
    for _ in range(2):
        assert isinstance(_login(factory, cfg, password="Wrong-password-1", client="10.0.3.3"), LoginRefused)
    assert isinstance(_login(factory, cfg, client="10.0.3.4"), User)  # 2 failures since the success: not throttled


def test_throttle_per_client(factory: sessionmaker[Session], cfg: Settings, clock: Clock) -> None:
    _user(factory)
    for name in ("bob", "carol", "dave"):
        assert isinstance(_login(factory, cfg, username=name, password="Guess-password-1", client="203.0.113.9"),
                          LoginRefused)
    from_attacker = _login(factory, cfg, client="203.0.113.9")
    assert isinstance(from_attacker, LoginRefused) and from_attacker.retry_after is not None
    assert isinstance(_login(factory, cfg, client="10.0.0.7"), User)  # alice elsewhere is not locked out


# --- API keys -----------------------------------------------------------------------------------------------------


def test_api_keys(factory: sessionmaker[Session]) -> None:
    system = _user(factory, "rms", roles=(CASE_SYSTEM,), password=None)
    human = _user(factory, "alice")
    with factory() as session, session.begin():
        with pytest.raises(accounts.AccountError, match="case-system"):
            apikeys.create_api_key(session, user=session.merge(human), name="laptop")
        record, plaintext = apikeys.create_api_key(session, user=session.merge(system), name="RMS production")
        expired, expired_key = apikeys.create_api_key(session, user=session.merge(system), name="old",
                                                      expires_at=accounts.utcnow() - dt.timedelta(seconds=1))
        key_id = record.id
    match = re.fullmatch(r"lk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})", plaintext)
    assert match is not None and match.group(1) == record.prefix
    assert record.secret_hash == hashlib.sha256(match.group(2).encode()).hexdigest()
    with factory() as session, session.begin():
        found = apikeys.resolve_api_key(session, key=plaintext)
        assert found is not None and found.username == "rms"
        assert session.get(ApiKey, key_id).last_used_at is not None  # type: ignore[union-attr]
        assert apikeys.resolve_api_key(session, key=plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
        assert apikeys.resolve_api_key(session, key="lk_nothing") is None
        assert apikeys.resolve_api_key(session, key="Bearer " + plaintext) is None
        assert apikeys.resolve_api_key(session, key=expired_key) is None
        apikeys.revoke_api_key(session, key=session.get(ApiKey, key_id))  # type: ignore[arg-type]
        assert apikeys.resolve_api_key(session, key=plaintext) is None
        _, fresh = apikeys.create_api_key(session, user=session.merge(system), name="new")
        assert apikeys.resolve_api_key(session, key=fresh) is not None
        accounts.deactivate_user(session, user=session.merge(system))
        assert apikeys.resolve_api_key(session, key=fresh) is None
        assert len(apikeys.list_api_keys(session, user=session.merge(system))) == 3
    assert expired.expires_at is not None


# --- refresh tokens -----------------------------------------------------------------------------------------------


def _rotate(factory: sessionmaker[Session], cfg: Settings, token: str) -> tuple[User, str] | LoginRefused:
    with factory() as session, session.begin():
        try:
            return accounts.rotate_refresh_token(session, token=token, settings=cfg)
        except LoginRefused as exc:
            return exc


def test_refresh_rotation_and_replay(factory: sessionmaker[Session], cfg: Settings) -> None:
    user = _user(factory)
    with factory() as session, session.begin():
        first = accounts.issue_refresh_token(session, user=session.merge(user), settings=cfg)
        other_session = accounts.issue_refresh_token(session, user=session.merge(user), settings=cfg)
    rotated = _rotate(factory, cfg, first)
    assert not isinstance(rotated, LoginRefused)
    owner, second = rotated
    assert owner.username == "alice" and second != first
    with factory() as session:
        old = session.get(RefreshToken, first.partition(".")[0])
        assert old is not None and old.used_at is not None and old.replaced_by == second.partition(".")[0]
        assert old.secret_hash != first.partition(".")[2]
    third = _rotate(factory, cfg, second)
    assert not isinstance(third, LoginRefused)
    # The first token again: a replay. Every refresh token of the user is revoked, the newest too.
    replay = _rotate(factory, cfg, first)
    assert isinstance(replay, LoginRefused) and "revoked" in replay.reason
    assert isinstance(_rotate(factory, cfg, third[1]), LoginRefused)
    assert isinstance(_rotate(factory, cfg, other_session), LoginRefused)
    with factory() as session:
        assert all(t.revoked_at is not None for t in session.scalars(select(RefreshToken)))
    assert isinstance(_rotate(factory, cfg, "garbage"), LoginRefused)
    assert isinstance(_rotate(factory, cfg, first.partition(".")[0] + ".wrong-secret"), LoginRefused)


def test_refresh_expired_and_revoked(factory: sessionmaker[Session], cfg: Settings) -> None:
    user = _user(factory)
    with factory() as session, session.begin():
        stale = accounts.issue_refresh_token(session, user=session.merge(user), settings=cfg)
        fresh = accounts.issue_refresh_token(session, user=session.merge(user), settings=cfg)
        session.execute(update(RefreshToken).where(RefreshToken.id == stale.partition(".")[0])
                        .values(expires_at=accounts.utcnow() - dt.timedelta(seconds=1)))
    expired = _rotate(factory, cfg, stale)
    assert isinstance(expired, LoginRefused) and "expired" in expired.reason
    with factory() as session, session.begin():
        assert accounts.revoke_refresh_token(session, token=fresh)
        assert not accounts.revoke_refresh_token(session, token="nope.nope")
    assert isinstance(_rotate(factory, cfg, fresh), LoginRefused)


# --- case assignments ---------------------------------------------------------------------------------------------


def test_assignments(factory: sessionmaker[Session]) -> None:
    with factory() as session, session.begin():
        case = records.create_case(session, reference="2026-0042", title="Burglary", description="", created_by="x")
        other = records.create_case(session, reference="2026-0043", title="Fraud", description="", created_by="x")
        first = accounts.assign(session, case_id=case.id, username="Alice", assigned_by="sup")
        again = accounts.assign(session, case_id=case.id, username="alice", assigned_by="someone-else")
        assert again.id == first.id and again.assigned_by == "sup"
        accounts.assign(session, case_id=case.id, username="bob@idp", assigned_by="sup")
        accounts.assign(session, case_id=other.id, username="alice", assigned_by="sup")
        with pytest.raises(accounts.UnknownCase):
            accounts.assign(session, case_id="no-such-case", username="alice", assigned_by="sup")
        case_id, other_id = case.id, other.id
    with factory() as session, session.begin():
        assert accounts.assigned_case_ids(session, username="ALICE") == {case_id, other_id}
        assert accounts.is_assigned(session, case_id=case_id, username="bob@idp")
        assert not accounts.is_assigned(session, case_id=other_id, username="bob@idp")
        assert [a.username for a in accounts.assignments_of_case(session, case_id=case_id)] == ["alice", "bob@idp"]
        assert accounts.unassign(session, case_id=case_id, username="Alice")
        assert not accounts.unassign(session, case_id=case_id, username="alice")
        assert accounts.assigned_case_ids(session, username="alice") == {other_id}


# --- the token endpoint and administration ------------------------------------------------------------------------


class Caller:
    """The principal the test app's routes receive (the main app authenticates in its middleware)."""

    principal = Principal(name="root", roles=frozenset({ADMINISTRATOR}), kind="user")


@pytest.fixture
def client(factory: sessionmaker[Session], cfg: Settings) -> Iterator[TestClient]:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(auth.router)
    app.include_router(admin.router)

    def session() -> Iterator[Session]:
        with factory() as s, s.begin():
            yield s

    app.dependency_overrides[deps.get_session] = session
    app.dependency_overrides[deps.get_settings] = lambda: cfg
    app.dependency_overrides[deps.get_principal] = lambda: Caller.principal
    Caller.principal = Principal(name="root", roles=frozenset({ADMINISTRATOR}), kind="user")
    with TestClient(app) as test_client:
        yield test_client


def _request(headers: dict[str, str]) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"",
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})


def _authenticate(factory: sessionmaker[Session], cfg: Settings, headers: dict[str, str]) -> Principal | None:
    with factory() as session, session.begin():
        return authenticate(_request(headers), session, cfg)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_password_and_refresh_grants(client: TestClient, factory: sessionmaker[Session],
                                           cfg: Settings) -> None:
    _user(factory, roles=(INVESTIGATOR, FORENSIC_EXAMINER))
    response = client.post("/auth/token", data={"grant_type": "password", "username": "Alice",
                                                "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 15 * 60
    assert body["roles"] == [FORENSIC_EXAMINER, INVESTIGATOR]
    claims = jwt.decode(body["access_token"], SECRET, algorithms=["HS256"], audience="locard-api", issuer="locard")
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 15 * 60 and claims["jti"]
    principal = _authenticate(factory, cfg, _bearer(body["access_token"]))
    assert principal is not None and principal.kind == "user" and principal.name == "alice"
    assert principal.roles == {INVESTIGATOR, FORENSIC_EXAMINER} and principal.user_id == claims["uid"]

    refreshed = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    newer = refreshed.json()["refresh_token"]
    assert newer != body["refresh_token"] and refreshed.json()["access_token"]
    replay = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # The replay was committed although the request was refused: the newest token is revoked as well.
    assert client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": newer}).status_code == 400

    login = client.post("/auth/token", data={"grant_type": "password", "username": "alice", "password": PASSWORD})
    token = login.json()["refresh_token"]
    assert client.post("/auth/revoke", data={"token": token}).status_code == 200
    assert client.post("/auth/revoke", data={"token": "unknown.token"}).status_code == 200
    assert client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": token}).status_code == 400


def test_token_errors_and_throttling(client: TestClient, factory: sessionmaker[Session], clock: Clock) -> None:
    _user(factory)

    def token(**form: str) -> tuple[int, dict[str, Any], str | None]:
        response = client.post("/auth/token", data=form)
        return response.status_code, response.json(), response.headers.get("retry-after")

    status, body, _ = token(grant_type="password", username="alice", password="Wrong-password-1")
    assert (status, body["error"]) == (400, "invalid_grant") and body["error_description"]
    assert token(grant_type="client_credentials")[:2] == (400, {"error": "unsupported_grant_type",
                                                                "error_description": UNSUPPORTED})
    assert token()[1]["error"] == "invalid_request"
    assert token(grant_type="password", username="alice")[1]["error"] == "invalid_request"
    assert token(grant_type="refresh_token")[1]["error"] == "invalid_request"
    as_json = client.post("/auth/token", json={"grant_type": "password", "username": "alice", "password": PASSWORD})
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    for _ in range(2):
        assert token(grant_type="password", username="alice", password="Wrong-password-1")[0] == 400
    status, body, retry_after = token(grant_type="password", username="alice", password=PASSWORD)
    assert status == 429 and body["error"] == "invalid_grant"
    assert retry_after == "1"  # the first backoff step


def test_administration(client: TestClient, factory: sessionmaker[Session], cfg: Settings) -> None:
    created = client.post("/admin/users", json={"username": "Bob", "password": PASSWORD, "roles": [INVESTIGATOR]})
    assert created.status_code == 201, created.text
    assert created.json()["username"] == "bob" and created.json()["has_password"] is True
    assert "password_hash" not in created.json()
    assert client.post("/admin/users", json={"username": "bob", "roles": [INVESTIGATOR]}).status_code == 409
    weak = client.post("/admin/users", json={"username": "eve", "password": "short", "roles": [INVESTIGATOR]})
    assert weak.status_code == 422 and weak.json()["title"] == "Weak password"
    assert client.post("/admin/users", json={"username": "eve", "roles": ["root"]}).status_code == 422
    assert client.post("/admin/users", json={"username": "rms", "roles": [CASE_SYSTEM]}).status_code == 201
    assert [u["username"] for u in client.get("/admin/users").json()] == ["bob", "rms"]

    key = client.post("/admin/users/rms/api-keys", json={"name": "RMS"})
    assert key.status_code == 201, key.text
    plaintext = key.json()["key"]
    assert plaintext.startswith("lk_")
    assert client.post("/admin/users/bob/api-keys", json={"name": "x"}).status_code == 422  # not a case system
    listed = client.get("/admin/users/rms/api-keys").json()
    assert len(listed) == 1 and "key" not in listed[0] and "secret_hash" not in listed[0]
    assert plaintext.partition("_")[2].partition("_")[2] not in json.dumps(listed)
    principal = _authenticate(factory, cfg, {"X-API-Key": plaintext})
    assert principal is not None and principal.kind == "api_key" and principal.roles == {CASE_SYSTEM}
    assert client.post(f"/admin/api-keys/{listed[0]['id']}/revoke").json()["revoked_at"]
    with pytest.raises(AuthenticationFailed):
        _authenticate(factory, cfg, {"Authorization": f"ApiKey {plaintext}"})

    assert client.put("/admin/users/bob/password", json={"password": "weak"}).status_code == 422
    assert client.put("/admin/users/bob/password", json={"password": "Another-Secret-7"}).status_code == 204
    assert client.put("/admin/users/bob/roles", json={"roles": [SUPERVISOR]}).json()["roles"] == [SUPERVISOR]
    assert client.post("/admin/users/bob/deactivate").json()["active"] is False
    assert client.get("/admin/users/nobody").status_code == 404

    with factory() as session, session.begin():
        case_id = records.create_case(session, reference="2026-0001", title="t", description="", created_by="x").id
    assigned = client.put(f"/admin/cases/{case_id}/assignments/Carol@IdP")
    assert assigned.status_code == 200 and assigned.json()["username"] == "carol@idp"
    assert [a["username"] for a in client.get(f"/admin/cases/{case_id}/assignments").json()] == ["carol@idp"]
    assert client.put("/admin/cases/no-case/assignments/carol").status_code == 404

    Caller.principal = Principal(name="sup", roles=frozenset({SUPERVISOR}))
    assert client.delete(f"/admin/cases/{case_id}/assignments/carol@idp").status_code == 204
    assert client.delete(f"/admin/cases/{case_id}/assignments/carol@idp").status_code == 404
    refused = client.get("/admin/users")
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("application/problem+json")
    Caller.principal = Principal(name="inv", roles=frozenset({INVESTIGATOR}))
    assert client.put(f"/admin/cases/{case_id}/assignments/inv").status_code == 403
    assert client.post("/admin/users", json={"username": "mallory", "roles": [ADMINISTRATOR]}).status_code == 403


# --- bearer tokens: Locard's own ----------------------------------------------------------------------------------


def _claims(**extra: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {"iss": "locard", "aud": "locard-api", "sub": "alice", "roles": [INVESTIGATOR], "iat": now, "nbf": now,
            "exp": now + dt.timedelta(minutes=5), "jti": "j", **extra}


def test_locard_tokens(factory: sessionmaker[Session], cfg: Settings) -> None:
    user = _user(factory)
    token, lifetime = issue_access_token(user_name="alice", roles=user.roles, user_id=user.id, settings=cfg)
    assert lifetime == 900
    principal = _authenticate(factory, cfg, _bearer(token))
    assert principal == Principal(name="alice", roles=frozenset({INVESTIGATOR}), kind="user", user_id=user.id)
    assert _authenticate(factory, cfg, {}) is None

    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    header, _, signature = token.split(".")
    unverified = jwt.decode(token, options={"verify_signature": False})
    forged_payload = _b64(json.dumps({**unverified, "exp": unverified["exp"] + 86_400}).encode())
    refused = {
        "expired": jwt.encode(_claims(uid=user.id, iat=past, nbf=past, exp=past + dt.timedelta(minutes=5)), SECRET),
        "tampered": f"{header}.{forged_payload}.{signature}",
        "wrong secret": jwt.encode(_claims(uid=user.id), "another-secret-of-sufficient-length!"),
        "wrong audience": jwt.encode(_claims(uid=user.id, aud="other-api"), SECRET),
        "not yet valid": jwt.encode(_claims(uid=user.id, nbf=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)), SECRET),
        "no such user": jwt.encode(_claims(sub="ghost"), SECRET),
        "alg none": _unsigned(_claims(uid=user.id)),
        "not a jwt": "not-a-token",
    }
    for why, bad in refused.items():
        with pytest.raises(AuthenticationFailed):
            _authenticate(factory, cfg, _bearer(bad))
            pytest.fail(f"accepted a token: {why}")
    with pytest.raises(AuthenticationFailed):
        _authenticate(factory, cfg, {"Authorization": f"Basic {token}"})

    # A role change refuses the tokens issued before it; roles are read from the account on every request; a
    # deactivated account's token is refused at once.
    with factory() as session, session.begin():
        changed = session.merge(user)
        accounts.set_roles(session, user=changed, roles=[FORENSIC_EXAMINER])
        epoch = changed.token_epoch
    with pytest.raises(AuthenticationFailed, match="revoked"):
        _authenticate(factory, cfg, _bearer(token))
    token, _ = issue_access_token(user_name="alice", roles=[INVESTIGATOR], user_id=user.id, settings=cfg, epoch=epoch)
    after = _authenticate(factory, cfg, _bearer(token))
    assert after is not None and after.roles == {FORENSIC_EXAMINER}
    with factory() as session, session.begin():
        accounts.deactivate_user(session, user=session.merge(user))
    with pytest.raises(AuthenticationFailed, match="deactivated"):
        _authenticate(factory, cfg, _bearer(token))


# --- bearer tokens: OpenID Connect --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any], **header: Any) -> str:
    body = {k: int(v.timestamp()) if isinstance(v, dt.datetime) else v for k, v in claims.items()}
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT', **header}).encode())}.{_b64(json.dumps(body).encode())}."


def _hs256_with(key: bytes, claims: dict[str, Any], **header: Any) -> str:
    """An HS256 token signed by hand (PyJWT rightly refuses to use a PEM public key as an HMAC secret)."""
    body = {k: int(v.timestamp()) if isinstance(v, dt.datetime) else v for k, v in claims.items()}
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', **header}).encode())}." \
                    f"{_b64(json.dumps(body).encode())}"
    return f"{signing_input}.{_b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


@pytest.fixture
def oidc(tmp_path: Path, database_url: str) -> dict[str, Any]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = [{**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "rsa-1", "use": "sig"},
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "ec-1"}]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": keys}))
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"rsa": rsa_key, "ec": ec_key, "pem": pem,
            "settings": _settings(database_url, oidc_issuer=ISSUER, oidc_audience="locard", oidc_jwks_file=str(jwks))}


def _oidc_claims(**extra: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {"iss": ISSUER, "aud": "locard", "sub": "f81d4fae", "preferred_username": "Carol.Smith",
            "roles": [INVESTIGATOR, "offline_access", SUPERVISOR], "iat": now, "exp": now + dt.timedelta(minutes=5),
            **extra}


def test_oidc_tokens(factory: sessionmaker[Session], oidc: dict[str, Any]) -> None:
    cfg: Settings = oidc["settings"]
    good = jwt.encode(_oidc_claims(), oidc["rsa"], algorithm="RS256", headers={"kid": "rsa-1"})
    principal = _authenticate(factory, cfg, _bearer(good))
    assert principal == Principal(name="carol.smith", roles=frozenset({INVESTIGATOR, SUPERVISOR}), kind="oidc")
    ec_token = jwt.encode(_oidc_claims(), oidc["ec"], algorithm="ES256", headers={"kid": "ec-1"})
    assert _authenticate(factory, cfg, _bearer(ec_token)) == principal

    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    refused = {
        "expired": jwt.encode(_oidc_claims(iat=past, exp=past + dt.timedelta(minutes=5)), oidc["rsa"],
                              algorithm="RS256", headers={"kid": "rsa-1"}),
        "wrong audience": jwt.encode(_oidc_claims(aud="another-app"), oidc["rsa"], algorithm="RS256",
                                     headers={"kid": "rsa-1"}),
        "wrong issuer": jwt.encode(_oidc_claims(iss="https://evil.example"), oidc["rsa"], algorithm="RS256",
                                   headers={"kid": "rsa-1"}),
        "unknown key": jwt.encode(_oidc_claims(), rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                  algorithm="RS256", headers={"kid": "rsa-1"}),
        "alg none": _unsigned(_oidc_claims(), kid="rsa-1"),
        "HS256 with the public key": _hs256_with(oidc["pem"], _oidc_claims(), kid="rsa-1"),
        "HS256 with the public key, no kid": _hs256_with(oidc["pem"], _oidc_claims()),
        "HS256 with Locard's secret, provider's issuer": jwt.encode(_oidc_claims(), SECRET, algorithm="HS256"),
        "no user name": jwt.encode(_oidc_claims(preferred_username=None), oidc["rsa"], algorithm="RS256",
                                   headers={"kid": "rsa-1"}),
    }
    for why, bad in refused.items():
        with pytest.raises(AuthenticationFailed):
            _authenticate(factory, cfg, _bearer(bad))
            pytest.fail(f"accepted a token: {why}")

    # Without OIDC configured, the provider's tokens are not accepted at all.
    with pytest.raises(AuthenticationFailed, match="issuer"):
        _authenticate(factory, _settings(cfg.database_url), _bearer(good))
    # A local account of the same name, deactivated, switches the external user off.
    carol = _user(factory, "carol.smith", password=None)
    linked = _authenticate(factory, cfg, _bearer(good))
    assert linked is not None and linked.user_id == carol.id and linked.roles == {INVESTIGATOR, SUPERVISOR}
    with factory() as session, session.begin():
        accounts.deactivate_user(session, user=session.merge(carol))
    with pytest.raises(AuthenticationFailed, match="deactivated"):
        _authenticate(factory, cfg, _bearer(good))
