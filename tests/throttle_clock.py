"""A frozen clock for the login throttle (`storage.logins`), moved by the test."""

from __future__ import annotations

import datetime as dt

import pytest

from storage import logins


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
