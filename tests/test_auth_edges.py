"""Authentication edge cases on both record stores, through the whole API where it matters.

Login throttling under concurrent guesses and its backoff; the principal cache keyed on the credential used and
re-checked against the account's revocation epoch (in this process and in another one); access tokens refused
after logout, refresh-token replay, password, role and state changes; separation of duties for administrators.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from api.principal import Principal
from api.principal_cache import PrincipalCache
from storage import accounts, audit, passwords
from storage.accounts import LoginRefused, User
from storage.fakes import MemoryObjectStore
from storage.logins import LoginThrottle
from storage.roles import ADMINISTRATOR, INVESTIGATOR, SUPERVISOR
from storage.settings import Settings
from tests.api_helpers import V1, account
from tests.throttle_clock import Clock, attempt_login

PASSWORD = "Correct-Horse-42"
WRONG = "Wrong-Password-9"
SECRET = "c4e8a1f7b3d95e2a6c0f8b4d1e7a3c9f"
AUDIT_KEY = "e9b3f7a1c5d82e6b4a0f9c3d7e1b5a8f"


def _settings(database_url: str, home: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {"environment": "test", "database_url": database_url, "home": home,
                              "token_secret": SECRET, "audit_key": AUDIT_KEY, **extra}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the argon2 verifications, i.e. the attempts whose password was evaluated."""
    counted: list[int] = []
    lock = threading.Lock()
    verify = passwords.matches

    def counting(password_hash: str | None, password: str) -> bool:
        with lock:
            counted.append(1)
        return verify(password_hash, password)

    monkeypatch.setattr(passwords, "matches", counting)
    return counted


def _user(factory: sessionmaker[Session], name: str = "alice", roles: tuple[str, ...] = (INVESTIGATOR,)) -> User:
    with factory() as session, session.begin():
        return accounts.create_user(session, username=name, password=PASSWORD, roles=roles, created_by="test")


def _login(factory: sessionmaker[Session], cfg: Settings, *, username: str = "alice", password: str = WRONG,
           client: str = "10.0.0.1") -> User | LoginRefused:
    return attempt_login(factory, cfg, username=username, password=password, client=client)


def _at_once(count: int, attempt: Callable[[int], Any]) -> list[Any]:
    """Run `attempt(i)` for i < count in as many threads, released together."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = attempt(i)
        except Exception as exc:  # reported by the assertions on the results
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results


# --- login throttling ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spread", ["one account from many addresses", "many accounts from one address"])
def test_concurrent_guesses_are_evaluated_at_most_the_limit(factory: sessionmaker[Session], tmp_path: Path,
                                                           database_url: str, clock: Clock,
                                                           evaluations: list[int], spread: str) -> None:
    cfg = _settings(database_url, tmp_path)
    _user(factory)
    by_address = spread.startswith("many accounts")

    def guess(i: int) -> User | LoginRefused:
        return _login(factory, cfg, username=f"user{i}" if by_address else "alice",
                      client="203.0.113.7" if by_address else f"198.51.100.{i}")

    results = _at_once(30, guess)
    assert all(isinstance(result, LoginRefused) for result in results), results
    assert len(evaluations) == cfg.login_max_failures == 5
    throttled = [result for result in results if isinstance(result, LoginRefused) and result.retry_after]
    assert len(throttled) == 30 - cfg.login_max_failures
    with factory() as session:
        key = "client:203.0.113.7" if by_address else "user:alice"
        row = session.get(LoginThrottle, key)
        assert row is not None and row.failures == cfg.login_max_failures


def test_concurrent_guesses_through_the_api(database_url: str, tmp_path: Path, clock: Clock,
                                           evaluations: list[int]) -> None:
    cfg = _settings(database_url, tmp_path, login_max_failures=3)
    with TestClient(create_app(cfg, store=MemoryObjectStore())) as client:
        admin = account(client, "root", (ADMINISTRATOR,))
        created = client.post(f"{V1}/admin/users", headers=admin,
                              json={"username": "alice", "password": PASSWORD, "roles": [INVESTIGATOR]})
        assert created.status_code == 201, created.text
        statuses = _at_once(30, lambda _: client.post(f"{V1}/auth/token", data={
            "grant_type": "password", "username": "alice", "password": WRONG}).status_code)
    assert sorted(statuses) == [400] * 3 + [429] * 27
    assert len(evaluations) == 3


def test_backoff_doubles_up_to_its_cap_and_waiting_attempts_do_not_count(factory: sessionmaker[Session],
                                                                         tmp_path: Path, database_url: str,
                                                                         clock: Clock, evaluations: list[int]) -> None:
    cfg = _settings(database_url, tmp_path, login_max_failures=3, login_backoff_max_seconds=8,
                    login_window_seconds=600)
    _user(factory)
    for n in range(3):  # free failures; the third sets the first wait, for the attempts after it
        assert _retry_after(_login(factory, cfg, client=f"10.1.0.{n}")) is None
    waits = []
    for n in range(5):
        refused = _login(factory, cfg, password=PASSWORD, client="10.2.0.1")  # the owner, while it waits
        assert isinstance(refused, LoginRefused) and refused.retry_after is not None
        waits.append(refused.retry_after)
        clock.advance(refused.retry_after)
        assert isinstance(_login(factory, cfg, client=f"10.1.1.{n}"), LoginRefused)  # the guesser, on time
    assert waits == [1, 2, 4, 8, 8]
    assert len(evaluations) == 3 + 5  # the owner's refused attempts were not evaluated, nor counted
    with factory() as session:
        row = session.get(LoginThrottle, "user:alice")
        assert row is not None and row.failures == 8
    # The guessing stops: the owner waits at most the cap, then gets in, and the account's count is cleared.
    clock.advance(8)
    assert isinstance(_login(factory, cfg, password=PASSWORD, client="10.2.0.1"), User)
    # A count is forgotten a window after its last failure.
    for _ in range(2):
        _login(factory, cfg, client="10.3.0.1")
    clock.advance(600)
    assert _retry_after(_login(factory, cfg, client="10.3.0.2")) is None
    with factory() as session:
        row = session.get(LoginThrottle, "user:alice")
        assert row is not None and row.failures == 1


def test_unknown_accounts_cost_a_verification_too(factory: sessionmaker[Session], tmp_path: Path,
                                                  database_url: str, evaluations: list[int]) -> None:
    cfg = _settings(database_url, tmp_path)
    _user(factory)
    assert isinstance(_login(factory, cfg, username="nobody", password=PASSWORD), LoginRefused)
    assert isinstance(_login(factory, cfg, username="alice"), LoginRefused)
    assert len(evaluations) == 2  # timing does not tell whether an account exists


def _retry_after(result: User | LoginRefused) -> int | None:
    assert isinstance(result, LoginRefused)
    return result.retry_after


def test_stale_throttle_rows_are_removed(factory: sessionmaker[Session], tmp_path: Path, database_url: str,
                                         clock: Clock) -> None:
    cfg = _settings(database_url, tmp_path, login_window_seconds=60)
    _login(factory, cfg, username="old", client="10.9.0.1")
    clock.advance(61)
    _login(factory, cfg, username="new", client="10.9.0.2")
    with factory() as session:
        keys = set(session.scalars(select(LoginThrottle.key)))
    assert keys == {"user:new", "client:10.9.0.2"}


# --- the whole API: cache, revocation epoch, separation of duties --------------------------------------------------


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two API processes (apps) on one record store, an administrator, and alice with a password."""
    cfg = _settings(database_url, tmp_path)
    with TestClient(create_app(cfg, store=MemoryObjectStore())) as one, \
            TestClient(create_app(cfg, store=MemoryObjectStore())) as other:
        admin = account(one, "root", (ADMINISTRATOR,))
        created = one.post(f"{V1}/admin/users", headers=admin,
                           json={"username": "alice", "password": PASSWORD, "roles": [INVESTIGATOR]})
        assert created.status_code == 201, created.text
        yield {"one": one, "other": other, "admin": admin, "factory": one.app.state.session_factory}  # type: ignore[attr-defined]


def _token(client: TestClient, **form: str) -> dict[str, Any]:
    response = client.post(f"{V1}/auth/token", data=form or {"grant_type": "password", "username": "alice",
                                                             "password": PASSWORD})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _bearer(body: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {body['access_token']}"}


def _works(client: TestClient, headers: dict[str, str]) -> int:
    return client.get(f"{V1}/cases", headers=headers).status_code


def test_logout_ends_the_access_token_at_once_in_every_process(api: dict[str, Any]) -> None:
    one, other = api["one"], api["other"]
    session, second = _token(one), _token(one)
    assert _works(one, _bearer(session)) == 200 and _works(other, _bearer(session)) == 200  # both caches warm
    assert one.post(f"{V1}/auth/revoke", data={"token": session["refresh_token"]}).status_code == 200
    for client in (one, other):
        refused = client.get(f"{V1}/cases", headers=_bearer(session))
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    # The other session's access token ended too; its refresh token gets it a new one.
    assert _works(one, _bearer(second)) == 401
    renewed = _token(one, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert _works(one, _bearer(renewed)) == 200


def test_a_replayed_refresh_token_ends_every_access_token(api: dict[str, Any]) -> None:
    one = api["one"]
    first = _token(one)
    second = _token(one, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert _works(one, _bearer(first)) == 200 and _works(one, _bearer(second)) == 200
    replay = one.post(f"{V1}/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert replay.status_code == 400
    assert _works(one, _bearer(first)) == 401 and _works(one, _bearer(second)) == 401


@pytest.mark.parametrize("change", ["password", "roles", "deactivate"])
def test_account_changes_end_the_access_tokens_at_once(api: dict[str, Any], change: str) -> None:
    one, other, admin = api["one"], api["other"], api["admin"]
    body = _token(one)
    assert _works(one, _bearer(body)) == 200 and _works(other, _bearer(body)) == 200
    if change == "password":
        done = one.put(f"{V1}/admin/users/alice/password", headers=admin, json={"password": "Another-Secret-7"})
    elif change == "roles":
        done = one.put(f"{V1}/admin/users/alice/roles", headers=admin, json={"roles": [SUPERVISOR]})
    else:
        done = one.post(f"{V1}/admin/users/alice/deactivate", headers=admin)
    assert done.status_code in (200, 204), done.text
    assert _works(one, _bearer(body)) == 401 and _works(other, _bearer(body)) == 401
    if change == "roles":  # a new login carries the new roles
        assert _token(one)["roles"] == [SUPERVISOR]


def test_the_cache_is_keyed_on_the_credential_used(api: dict[str, Any]) -> None:
    one, other, admin = api["one"], api["other"], api["admin"]
    assert one.post(f"{V1}/admin/users", headers=admin, json={"username": "rms", "roles": ["case_system"]}
                    ).status_code == 201
    created = one.post(f"{V1}/admin/users/rms/api-keys", headers=admin, json={"name": "RMS"}).json()
    key = {"X-API-Key": created["key"]}
    junk = {"Authorization": "Bearer junk"}
    assert _works(one, {**junk, **key}) == 200  # the API key is the credential used; the junk bearer is ignored
    assert _works(one, junk) == 401  # and is not accepted on its own afterwards
    assert _works(one, key) == 200 and _works(other, key) == 200
    assert one.post(f"{V1}/admin/api-keys/{created['id']}/revoke", headers=admin).status_code == 200
    assert _works(one, key) == 401 and _works(other, key) == 401  # at once, in both processes


def test_principal_cache_entries_end_with_their_credential() -> None:
    now = [0.0]
    cache = PrincipalCache(seconds=300, size=2, clock=lambda: now[0])
    expiring = Principal(name="a", expires_at=accounts.utcnow() + dt.timedelta(seconds=60))
    cache.put("a", expiring)
    cache.put("gone", Principal(name="g", expires_at=accounts.utcnow() - dt.timedelta(seconds=1)))
    assert cache.get("gone") is None and len(cache) == 1
    now[0] = 30
    assert cache.get("a") == expiring
    now[0] = 61
    assert cache.get("a") is None
    for name in ("x", "y", "z"):
        cache.put(name, Principal(name=name))
    assert len(cache) <= 2


# --- separation of duties ----------------------------------------------------------------------------------------


def _refusals(factory: sessionmaker[Session], actor: str, under: str = "") -> list[audit.AuditEntry]:
    """The refused requests of `actor` in the audit log (those whose route starts with `under`)."""
    with factory() as session:
        return [entry for entry in audit.query(session, actor=actor, limit=1000)
                if entry.outcome == "denied" and entry.resource.partition(" ")[2].startswith(under)]


def test_an_administrator_cannot_give_itself_case_data(api: dict[str, Any]) -> None:
    one, admin, factory = api["one"], api["admin"], api["factory"]
    attempts = {
        "grant itself supervisor": one.put(f"{V1}/admin/users/root/roles", headers=admin,
                                           json={"roles": [ADMINISTRATOR, SUPERVISOR]}),
        "drop administrator and take supervisor": one.put(f"{V1}/admin/users/root/roles", headers=admin,
                                                          json={"roles": [SUPERVISOR]}),
        "a second account with both roles": one.post(f"{V1}/admin/users", headers=admin, json={
            "username": "root2", "password": PASSWORD, "roles": [ADMINISTRATOR, INVESTIGATOR]}),
        "administrator to a case-data account": one.put(f"{V1}/admin/users/alice/roles", headers=admin,
                                                        json={"roles": [INVESTIGATOR, ADMINISTRATOR]}),
        "an API key for an administrator": one.post(f"{V1}/admin/users/root/api-keys", headers=admin,
                                                    json={"name": "mine"}),
    }
    statuses = {why: (response.status_code, response.json()["title"]) for why, response in attempts.items()}
    assert statuses == {"grant itself supervisor": (403, "Cannot change your own roles"),
                        "drop administrator and take supervisor": (403, "Cannot change your own roles"),
                        "a second account with both roles": (422, "Conflicting roles"),
                        "administrator to a case-data account": (422, "Conflicting roles"),
                        "an API key for an administrator": (422, "Invalid account")}
    assert _works(one, admin) == 403  # still no case data
    with factory() as session:
        assert accounts.get_user_by_name(session, username="root2") is None
        root = accounts.get_user_by_name(session, username="root")
        assert root is not None and root.roles == [ADMINISTRATOR]
    reasons = [entry.detail.get("reason", "") for entry in _refusals(factory, "root", f"{V1}/admin/")]
    assert len(reasons) == 5 and sum("own roles" in r for r in reasons) == 2
    assert sum("administrator holds no role" in r for r in reasons) == 2
    # Another administrator may change an account's roles, within the same rule.
    other_admin = account(one, "root3", (ADMINISTRATOR,))
    moved = one.put(f"{V1}/admin/users/alice/roles", headers=other_admin, json={"roles": [SUPERVISOR]})
    assert moved.status_code == 200 and moved.json()["roles"] == [SUPERVISOR]


def test_a_missing_role_is_refused_alike_on_every_route_and_audited_with_its_reason(api: dict[str, Any]) -> None:
    one, admin, factory = api["one"], api["admin"], api["factory"]
    alice = _bearer(_token(one))
    refused = {
        f"{V1}/admin/users": one.post(f"{V1}/admin/users", headers=alice, json={
            "username": "mallory", "password": PASSWORD, "roles": [ADMINISTRATOR]}),
        f"{V1}/admin/cases/{{case_id}}/assignments": one.get(f"{V1}/admin/cases/x/assignments", headers=alice),
        f"{V1}/audit": one.get(f"{V1}/audit", headers=alice),
        f"{V1}/cases": one.get(f"{V1}/cases", headers=admin),
    }
    needs = {f"{V1}/admin/users": "administrator", f"{V1}/admin/cases/{{case_id}}/assignments":
             "administrator, supervisor", f"{V1}/audit": "auditor",
             f"{V1}/cases": "investigator, forensic_examiner, supervisor, case_system"}
    for path, response in refused.items():
        assert (response.status_code, response.json()["title"]) == (403, "Not permitted"), path
        assert response.json()["detail"] == f"This needs one of the roles: {needs[path]}."
    entries = {entry.resource.partition(" ")[2]: entry for actor in ("alice", "root")
               for entry in _refusals(factory, actor)}
    assert {path: entries[path].detail["reason"] for path in refused} == {
        path: f"This needs one of the roles: {needs[path]}." for path in refused}
    assert all(entries[path].detail["status"] == 403 for path in refused)
    with factory() as session:
        assert accounts.get_user_by_name(session, username="mallory") is None


def test_refused_logins_are_audited_as_denied_with_their_reason(api: dict[str, Any]) -> None:
    one, factory = api["one"], api["factory"]
    wrong = one.post(f"{V1}/auth/token", data={"grant_type": "password", "username": "Alice", "password": WRONG})
    assert wrong.status_code == 400
    _token(one)
    denied = _refusals(factory, "anonymous", f"{V1}/auth/token")
    assert [(e.action, e.detail["username"], e.detail["reason"], e.detail["status"]) for e in denied] == [
        ("authentication", "alice", "invalid user name or password", 400)]


def test_a_principal_holding_both_is_refused(api: dict[str, Any]) -> None:
    one, factory = api["one"], api["factory"]
    with factory() as session, session.begin():  # data written before the rule, bypassing it
        session.execute(update(User).where(User.username == "alice")
                        .values(roles=[ADMINISTRATOR, INVESTIGATOR]))
    refused = one.get(f"{V1}/cases", headers=_bearer(_token(one)))
    assert refused.status_code == 401 and "administrator together with investigator" in refused.json()["detail"]
    assert any("administrator together" in entry.detail.get("reason", "") for entry in _refusals(factory, "anonymous"))
