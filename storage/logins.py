"""Login throttling: failed password logins counted per account name and per client address, with backoff.

Policy. Each key (an account name, a client address) may fail `login_max_failures` times without delay; each
further failure makes that key wait before its next attempt is evaluated at all: 1, 2, 4, ... seconds, at most
`login_backoff_max_seconds`. A key's count is forgotten `login_window_seconds` after its last failure, and a
successful login clears its account's count (never its address's). While a key waits, its attempts are refused
without checking the password and without being counted, so they do not lengthen the wait: the owner of an
account that someone else guessed at is kept out for at most `login_backoff_max_seconds` after the last
evaluated guess, and a guesser gets `login_max_failures` quick tries, then one per backoff period.

The check and the count are atomic: both rows are locked (row locks on PostgreSQL, the database's write lock
on SQLite) from the check until the caller's transaction ends, so concurrent guesses are evaluated one after
the other and never more of them than the policy allows.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from sqlalchemy import Integer, String, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.settings import Settings
from storage.tables import Base, utcnow

KEY_LENGTH = 120
PURGE_BATCH = 500  # stale rows removed per failed login, so the table stays small without a separate job

__all__ = ["LoginThrottle", "backoff_seconds", "clear", "lock_keys", "record_failure", "throttle_keys", "utcnow",
           "wait_seconds"]


class LoginThrottle(Base):
    """The failed-login count of one key (`user:<name>` or `client:<address>`) and until when it must wait."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[dt.datetime | None] = mapped_column()
    blocked_until: Mapped[dt.datetime | None] = mapped_column()


def throttle_keys(*, username: str, client: str) -> tuple[str, str]:
    """The two keys of a login attempt, in the order they are locked (the same in every transaction)."""
    return f"client:{client[:100]}", f"user:{username.strip().lower()[:100]}"


def backoff_seconds(failures: int, settings: Settings) -> int:
    """How long a key with `failures` recent failures waits before its next attempt (0: no wait)."""
    over = failures - settings.login_max_failures
    if over < 0:
        return 0
    return int(min(2 ** min(over, 31), settings.login_backoff_max_seconds))


def lock_keys(session: Session, *, keys: Sequence[str]) -> list[LoginThrottle]:
    """The rows of `keys` (created when missing), locked until the session's transaction ends."""
    ordered = sorted(set(keys))
    dialect = session.get_bind().dialect.name
    values = [{"key": key, "failures": 0} for key in ordered]
    if dialect == "postgresql":
        session.execute(postgresql.insert(LoginThrottle).values(values).on_conflict_do_nothing(index_elements=["key"]))
    elif dialect == "sqlite":
        # A write statement: it takes SQLite's write lock (waiting out the busy timeout), held until commit.
        session.execute(sqlite.insert(LoginThrottle).values(values).on_conflict_do_nothing(index_elements=["key"]))
    else:
        raise RuntimeError(f"login throttling supports SQLite and PostgreSQL, not {dialect}")
    rows = session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(ordered)).order_by(LoginThrottle.key)
                           .with_for_update().execution_options(populate_existing=True)).all()
    return list(rows)


def wait_seconds(rows: Sequence[LoginThrottle], *, now: dt.datetime) -> int | None:
    """Seconds until every one of `rows` may try again (None: none of them waits)."""
    waits = [math.ceil((row.blocked_until - now).total_seconds()) for row in rows
             if row.blocked_until is not None and row.blocked_until > now]
    return max(1, max(waits)) if waits else None


def record_failure(session: Session, *, rows: Sequence[LoginThrottle], now: dt.datetime, settings: Settings) -> None:
    """Count one failed attempt on each locked row, set its wait, and drop other keys' stale rows."""
    window = dt.timedelta(seconds=settings.login_window_seconds)
    for row in rows:
        if row.last_failure_at is None or row.last_failure_at <= now - window:
            row.failures = 0
        row.failures += 1
        row.last_failure_at = now
        delay = backoff_seconds(row.failures, settings)
        row.blocked_until = now + dt.timedelta(seconds=delay) if delay else None
    session.flush()
    # Rows neither counting nor waiting any more; rows another login holds locked are left for later.
    stale = (select(LoginThrottle.key)
             .where(LoginThrottle.key.not_in([row.key for row in rows]),
                    or_(LoginThrottle.last_failure_at.is_(None), LoginThrottle.last_failure_at <= now - window),
                    or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until <= now))
             .limit(PURGE_BATCH).with_for_update(skip_locked=True))
    keys = list(session.scalars(stale))
    if keys:
        session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(keys)))


def clear(session: Session, *, row: LoginThrottle) -> None:
    """Forget a key's failures (a successful login of its account)."""
    row.failures = 0
    row.last_failure_at = None
    row.blocked_until = None
    session.flush()
