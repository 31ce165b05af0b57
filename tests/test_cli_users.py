"""`locard users` on both record stores: the first administrator, roles, passwords, deactivation, the audit log.

Runs the CLI's `main` with standard input (or the terminal prompt) patched, against a fresh record store that
only the CLI has touched; then the administrator it made logs in through the API.
"""

from __future__ import annotations

import getpass
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from locard import cli
from storage import accounts, audit
from storage.db import make_engine, session_factory
from storage.fakes import MemoryObjectStore
from storage.settings import Settings, get_settings

PASSWORD = "Root-Password-2026"
AUDIT_KEY = "f1a7c3e9b5d20c8e4a6f1b9d3c7e5a2f"
TOKEN_SECRET = "d2b8f4a0c6e19f3b7d5a2c8e0f4b6a9d"


class Terminal(io.StringIO):
    """Standard input that is a terminal (its content is never read: the password is asked with getpass)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def store(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sessionmaker[Session]]:
    """The CLI's settings from the environment; sessions on its record store (after its first command)."""
    for name, value in {"LOCARD_DATABASE_URL": database_url, "LOCARD_HOME": str(tmp_path / "home"),
                        "LOCARD_AUDIT_KEY": AUDIT_KEY, "LOCARD_TOKEN_SECRET": TOKEN_SECRET,
                        "LOCARD_ENVIRONMENT": "test"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    engine = make_engine(database_url)
    yield session_factory(engine, chain_key=AUDIT_KEY.encode())
    engine.dispose()
    get_settings.cache_clear()


def locard(monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return cli.main(list(argv))


def _user(factory: sessionmaker[Session], name: str) -> accounts.User:
    with factory() as session:
        user = accounts.get_user_by_name(session, username=name)
        assert user is not None
        return user


def _entries(factory: sessionmaker[Session]) -> list[audit.AuditEntry]:
    with factory() as session:
        return list(audit.query(session, actor=f"cli:{getpass.getuser()}", limit=1000))


def test_the_first_administrator_is_made_with_the_cli(store: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], database_url: str,
                                                      tmp_path: Path) -> None:
    assert locard(monkeypatch, "users", "add", "Root", "--role", "administrator", "--display-name", "First admin",
                  "--password-stdin", stdin=f"{PASSWORD}\n") == 0
    assert "created root: administrator (active, password)" in capsys.readouterr().out
    root = _user(store, "root")
    assert root.roles == ["administrator"] and root.display_name == "First admin"
    assert root.created_by == f"cli:{getpass.getuser()}"
    [entry] = _entries(store)
    assert (entry.action, entry.resource, entry.outcome, entry.resource_id) == (
        "alteration", "locard users add", "ok", root.id)
    assert entry.detail["roles"] == ["administrator"] and PASSWORD not in str(entry.detail)
    with store() as session:
        assert all(result.ok for result in audit.verify_all(session, key=AUDIT_KEY.encode()))
    # The administrator logs in through the API and manages accounts.
    values: dict[str, Any] = {"environment": "test", "database_url": database_url, "home": tmp_path / "api",
                              "token_secret": TOKEN_SECRET, "audit_key": AUDIT_KEY}
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    with TestClient(create_app(settings, store=MemoryObjectStore())) as client:
        token = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "root",
                                                        "password": PASSWORD})
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        created = client.post("/api/v1/admin/users", headers=headers,
                              json={"username": "ann", "password": "Investigator-7-pass", "roles": ["investigator"]})
        assert created.status_code == 201, created.text


def test_passwords_come_from_the_terminal_or_standard_input_only(store: sessionmaker[Session],
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        locard(monkeypatch, "users", "add", "root", "--role", "administrator", "--password", PASSWORD)
    assert exited.value.code == 2
    assert locard(monkeypatch, "users", "add", "root", "--role", "administrator") == 1  # no terminal, no flag
    assert "--password-stdin" in capsys.readouterr().out
    answers = iter(["Root-Password-2026", "Root-Password-2027"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    monkeypatch.setattr("sys.stdin", Terminal())
    assert cli.main(["users", "add", "root", "--role", "administrator"]) == 1
    assert "differ" in capsys.readouterr().out
    answers = iter([PASSWORD, PASSWORD])
    assert cli.main(["users", "add", "root", "--role", "administrator"]) == 0
    with store() as session:
        found = accounts.verify_password(session, username="root", password=PASSWORD, client="cli-test",
                                         settings=get_settings())
        assert found.roles == ["administrator"]


@pytest.mark.parametrize(("argv", "stdin", "why"), [
    (("users", "add", "root", "--role", "administrator", "--password-stdin"), "short\n", "12 characters"),
    (("users", "add", "root", "--role", "administrator", "--role", "supervisor", "--password-stdin"),
     f"{PASSWORD}\n", "administrator holds no role"),
    (("users", "add", "root", "--role", "administrator", "--password-stdin"), "\n", "no password"),
])
def test_refusals_are_explained_and_audited(store: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], stdin: str,
                                            why: str) -> None:
    assert locard(monkeypatch, *argv, stdin=stdin) == 1
    assert why in capsys.readouterr().out
    if why == "no password":  # refused before the record store is opened
        return
    with store() as session:
        assert accounts.get_user_by_name(session, username="root") is None
    [entry] = _entries(store)
    assert entry.outcome == "denied" and why in entry.detail["reason"]


def test_roles_password_deactivate_and_list(store: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert locard(monkeypatch, "users", "add", "rms", "--role", "case_system", "--no-password") == 0
    assert locard(monkeypatch, "users", "add", "ann", "--role", "investigator", "--password-stdin",
                  stdin="Investigator-7-pass\n") == 0
    epoch = _user(store, "ann").token_epoch
    assert locard(monkeypatch, "users", "roles", "ANN", "--set", "supervisor", "auditor") == 0
    ann = _user(store, "ann")
    assert ann.roles == ["auditor", "supervisor"] and ann.token_epoch > epoch  # her access tokens end
    assert locard(monkeypatch, "users", "roles", "ann", "--set", "administrator", "investigator") == 1
    assert locard(monkeypatch, "users", "roles", "nobody", "--set", "auditor") == 1
    assert locard(monkeypatch, "users", "password", "ann", "--password-stdin", stdin="Another-Secret-7\n") == 0
    with store() as session:
        assert accounts.verify_password(session, username="ann", password="Another-Secret-7", client="cli-test",
                                        settings=get_settings()).username == "ann"
    assert locard(monkeypatch, "users", "deactivate", "rms") == 0
    assert not _user(store, "rms").active
    capsys.readouterr()
    assert locard(monkeypatch, "users", "list") == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == ["ann: auditor, supervisor (active, password)", "rms: case_system (deactivated, no password)"]
    done: dict[str, Any] = {}
    for entry in _entries(store):
        done.setdefault(entry.resource, []).append((entry.action, entry.outcome))
    assert done == {"locard users add": [("alteration", "ok")] * 2,
                    "locard users roles": [("alteration", "ok"), ("alteration", "denied"), ("alteration", "denied")],
                    "locard users password": [("alteration", "ok")],
                    "locard users deactivate": [("alteration", "ok")],
                    "locard users list": [("consultation", "ok")]}
