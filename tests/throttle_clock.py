"""Login-throttle helpers for tests: a frozen clock (`storage.logins`), moved by the test, and one login attempt."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session, sessionmaker

from storage import accounts, logins
from storage.accounts import LoginRefused, User
from storage.settings import Settings


class Clock:
    """The throttle's clock, moved by the test: attempts made "at once" happen at the same instant."""

    def __init__(self) -> None:
        self.now = logins.utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def freeze(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Replace the throttle's clock with a frozen one."""
    frozen = Clock()
    monkeypatch.setattr(logins, "utcnow", frozen)
    return frozen


def attempt_login(factory: sessionmaker[Session], cfg: Settings, *, username: str, password: str,
                  client: str) -> User | LoginRefused:
    """One login attempt in its own transaction, committed even when refused (as the token endpoint does)."""
    with factory() as session, session.begin():
        try:
            return accounts.verify_password(session, username=username, password=password, client=client,
                                            settings=cfg)
        except LoginRefused as exc:
            return exc
