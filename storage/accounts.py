"""Accounts: users, refresh tokens, password logins and case assignments (keyword-only data access).

Secrets are never stored: passwords as argon2id hashes (`storage.passwords`), refresh tokens and API keys
(`storage.apikeys`; 256-bit random) as SHA-256. User names are kept lower-case, so uniqueness and assignments
ignore case.

Separation of duties: an administrator manages accounts and holds no role that works with case data
(`check_roles` refuses the combination everywhere; the roles are `storage.roles`). Each user has a revocation
epoch (`token_epoch`): access tokens carry the epoch they were issued in and are refused once it moves on, which
it does on logout, on a replayed refresh token, and when the password, the roles, the account's state or one of
its API keys changes.

Functions that refuse a login (`verify_password`, `rotate_refresh_token`) may have written before they raise
`LoginRefused` (a failed attempt recorded, a replayed token family revoked): the caller must commit its
transaction even when they raise.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint, delete, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage import logins, passwords
from storage.passwords import MAX_PASSWORD_LENGTH
from storage.roles import ROLES, Role, role_conflict
from storage.settings import Settings
from storage.tables import Base, Case, new_id, utcnow

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,99}$")


# --- tables -------------------------------------------------------------------------------------------------------


class User(Base):
    """A Locard account. Case systems and OpenID Connect users may have no password."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("username", name="uq_users_username"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(100))  # lower-case, unique
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    token_epoch: Mapped[int] = mapped_column(Integer, default=0)  # access tokens of an earlier epoch are refused


class RefreshToken(Base):
    """A refresh token `<id>.<secret>`, used once: each use issues its successor (`replaced_by`)."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    replaced_by: Mapped[str | None] = mapped_column(String(36))


class CaseAssignment(Base):
    """A user assigned to a case, by name (so an OpenID Connect user is assigned like a local one)."""

    __tablename__ = "case_assignments"
    __table_args__ = (UniqueConstraint("case_id", "username", name="uq_case_assignment"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    username: Mapped[str] = mapped_column(String(100), index=True)  # lower-case
    assigned_by: Mapped[str] = mapped_column(String(200))
    assigned_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --- errors -------------------------------------------------------------------------------------------------------


class AccountError(ValueError):
    """An account request that cannot be honoured (the message says why)."""


class WeakPassword(AccountError):
    """The password does not meet the policy; the message says why."""


class UnknownRole(AccountError):
    """A role Locard does not know."""


class RoleConflict(AccountError):
    """Roles that one account may not hold together (administrator with a role that works with case data)."""


class InvalidUsername(AccountError):
    """A user name Locard does not accept."""


class DuplicateUser(AccountError):
    """A user with this name exists already."""


class UnknownCase(AccountError):
    """An assignment to a case that does not exist."""


class LoginRefused(Exception):
    """A login (password or refresh token) refused; `retry_after` (seconds) is set when throttled."""

    def __init__(self, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


# --- helpers ------------------------------------------------------------------------------------------------------


def hash_token(value: str) -> str:
    """SHA-256 (hex) of a high-entropy secret: right for random keys and tokens, never for passwords."""
    return hashlib.sha256(value.encode()).hexdigest()


def normalize_username(username: str) -> str:
    """The stored form of a user name (lower-case, trimmed); raises `InvalidUsername` when it is not acceptable."""
    name = username.strip().lower()
    if not USERNAME_PATTERN.fullmatch(name):
        raise InvalidUsername("a user name is 1-100 characters: letters, digits, '.', '_', '@' and '-', "
                              "starting with a letter or digit")
    return name


def check_roles(roles: Sequence[str]) -> list[str]:
    """The roles, sorted and without repeats; raises `UnknownRole` for a role Locard does not know."""
    if isinstance(roles, str):
        raise UnknownRole("roles are a list of role names")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise UnknownRole(f"unknown roles {', '.join(unknown)}; known roles are {', '.join(ROLES)}")
    if not roles:
        raise UnknownRole("a user needs at least one role")
    conflicting = role_conflict(roles)
    if conflicting:
        raise RoleConflict(f"an administrator holds no role that works with case data ({', '.join(conflicting)}); "
                           "give those roles to a separate account")
    return sorted({Role(role).value for role in roles})  # plain names, as stored


def check_password_policy(password: str, *, username: str = "") -> None:
    """`WeakPassword` unless the password meets the policy (`storage.passwords.policy_violation`)."""
    violation = passwords.policy_violation(password, username=username)
    if violation is not None:
        raise WeakPassword(violation)


# --- users --------------------------------------------------------------------------------------------------------


def create_user(session: Session, *, username: str, password: str | None, roles: Sequence[str],
                display_name: str = "", created_by: str) -> User:
    """A new, active user; `password` None for accounts that never log in with one (case systems, OIDC users)."""
    name = normalize_username(username)
    role_list = check_roles(roles)
    if password is not None:
        check_password_policy(password, username=name)
    if get_user_by_name(session, username=name) is not None:
        raise DuplicateUser(f"a user {name!r} exists already")
    user = User(username=name, display_name=display_name, roles=role_list, active=True, created_by=created_by,
                password_hash=passwords.hash_password(password) if password is not None else None)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, *, user_id: str) -> User | None:
    return session.get(User, user_id)


def get_user_by_name(session: Session, *, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.strip().lower()))


def list_users(session: Session, *, offset: int = 0, limit: int = 100) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.username).offset(offset).limit(limit)).all()


def bump_token_epoch(session: Session, *, user: User) -> int:
    """Move the user's revocation epoch on (atomically): every access token issued so far is refused, and cached
    principals of the user are checked again. The new epoch."""
    session.flush()
    session.execute(update(User).where(User.id == user.id).values(token_epoch=User.token_epoch + 1)
                    .execution_options(synchronize_session=False))
    session.refresh(user, attribute_names=["token_epoch"])
    return user.token_epoch


def end_sessions(session: Session, *, user: User) -> None:
    """Refuse the user's access tokens and revoke their refresh tokens."""
    revoke_refresh_tokens(session, user=user)
    bump_token_epoch(session, user=user)


def set_password(session: Session, *, user: User, password: str | None) -> None:
    """Replace the password (None removes it) and end every session of the user (access and refresh tokens)."""
    if password is not None:
        check_password_policy(password, username=user.username)
    user.password_hash = passwords.hash_password(password) if password is not None else None
    end_sessions(session, user=user)


def set_roles(session: Session, *, user: User, roles: Sequence[str]) -> None:
    """Replace the user's roles; a change refuses the access tokens issued before it."""
    new_roles = check_roles(roles)
    if new_roles != sorted(user.roles):
        user.roles = new_roles
        bump_token_epoch(session, user=user)
    session.flush()


def deactivate_user(session: Session, *, user: User) -> None:
    """Deactivate the account: its tokens and API keys are refused from now on, its refresh tokens revoked."""
    user.active = False
    end_sessions(session, user=user)


# --- password logins and throttling -------------------------------------------------------------------------------


def verify_password(session: Session, *, username: str, password: str, client: str, settings: Settings) -> User:
    """The user whose name and password these are, or `LoginRefused`.

    Throttled per account name and per client address (`storage.logins` states the policy): while either
    waits, the attempt is refused (`retry_after` set) without checking the password, even the right one.
    Refused too for an unknown user, a wrong password, an account without a password, or an inactive account;
    those failures are counted (commit even when this raises). A success clears the account's count. Unknown
    users cost a hash verification too, so timing does not tell them.
    """
    name = username.strip().lower()[:100]
    rows = logins.lock_keys(session, keys=logins.throttle_keys(username=name, client=client))
    now = logins.utcnow()
    wait = logins.wait_seconds(rows, now=now)
    if wait is not None:
        raise LoginRefused(f"too many failed logins; try again in {wait} seconds", retry_after=wait)
    user = get_user_by_name(session, username=name) if len(password) <= MAX_PASSWORD_LENGTH else None
    verified = passwords.matches(user.password_hash if user is not None else None, password[:MAX_PASSWORD_LENGTH])
    if user is None or not verified:
        logins.record_failure(session, rows=rows, now=now, settings=settings)
        raise LoginRefused("invalid user name or password")
    if not user.active:
        raise LoginRefused("the account is deactivated")
    assert user.password_hash is not None  # passwords.matches is false without one
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    for row in rows:
        if row.key.startswith("user:"):
            logins.clear(session, row=row)
    session.flush()
    return user


# --- refresh tokens -----------------------------------------------------------------------------------------------


def issue_refresh_token(session: Session, *, user: User, settings: Settings) -> str:
    """A new refresh token `<id>.<secret>` for the user, valid for `refresh_token_hours`."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    token = RefreshToken(user_id=user.id, secret_hash=hash_token(secret), issued_at=now,
                         expires_at=now + dt.timedelta(hours=settings.refresh_token_hours))
    session.add(token)
    session.flush()
    return f"{token.id}.{secret}"


def _find_refresh_token(session: Session, token: str) -> RefreshToken | None:
    token_id, _, secret = token.strip().partition(".")
    if not token_id or not secret or len(token_id) > 36 or len(secret) > 200:
        return None
    record = session.get(RefreshToken, token_id)
    if record is None or not hmac.compare_digest(record.secret_hash, hash_token(secret)):
        return None
    return record


def rotate_refresh_token(session: Session, *, token: str, settings: Settings) -> tuple[User, str]:
    """Use a refresh token once: the user and a new refresh token, or `LoginRefused`.

    A token presented after it was used is taken as stolen: every refresh token and access token of its user is
    revoked (commit even when this raises).
    """
    record = _find_refresh_token(session, token)
    if record is None:
        raise LoginRefused("invalid refresh token")
    if record.revoked_at is not None:
        raise LoginRefused("the refresh token was revoked")
    user = session.get(User, record.user_id)
    if user is None:
        raise LoginRefused("invalid refresh token")
    now = utcnow()
    if record.used_at is not None:
        end_sessions(session, user=user)
        raise LoginRefused("the refresh token was used before; every session of this user has been revoked")
    if record.expires_at <= now:
        raise LoginRefused("the refresh token has expired")
    if not user.active:
        raise LoginRefused("the account is deactivated")
    # Claim the token atomically: of two concurrent uses, only one wins; the other is a replay.
    claimed = session.execute(update(RefreshToken).where(RefreshToken.id == record.id, RefreshToken.used_at.is_(None),
                                                         RefreshToken.revoked_at.is_(None)).values(used_at=now)
                              .execution_options(synchronize_session=False))
    if not isinstance(claimed, CursorResult) or claimed.rowcount != 1:
        end_sessions(session, user=user)
        raise LoginRefused("the refresh token was used before; every session of this user has been revoked")
    session.refresh(record)
    new_token = issue_refresh_token(session, user=user, settings=settings)
    record.replaced_by = new_token.partition(".")[0]
    session.flush()
    return user, new_token


def revoke_refresh_token(session: Session, *, token: str) -> bool:
    """Log out: revoke one refresh token and refuse its user's access tokens (all of them: the epoch is per
    user; other sessions get a new access token with their refresh token). Whether it was a known token."""
    record = _find_refresh_token(session, token)
    if record is None:
        return False
    if record.revoked_at is None:
        record.revoked_at = utcnow()
    user = session.get(User, record.user_id)
    if user is not None:
        bump_token_epoch(session, user=user)
    session.flush()
    return True


def revoke_refresh_tokens(session: Session, *, user: User) -> int:
    """Revoke every refresh token of the user still in force; how many were."""
    result = session.execute(update(RefreshToken).where(RefreshToken.user_id == user.id,
                                                        RefreshToken.revoked_at.is_(None))
                             .values(revoked_at=utcnow()).execution_options(synchronize_session="fetch"))
    return result.rowcount if isinstance(result, CursorResult) else 0


# --- case assignments ---------------------------------------------------------------------------------------------


def assign(session: Session, *, case_id: str, username: str, assigned_by: str) -> CaseAssignment:
    """Assign a user (by name) to a case; assigning twice returns the existing assignment."""
    name = normalize_username(username)
    existing = session.scalar(select(CaseAssignment).where(CaseAssignment.case_id == case_id,
                                                           CaseAssignment.username == name))
    if existing is not None:
        return existing
    if session.get(Case, case_id) is None:
        raise UnknownCase(f"there is no case {case_id}")
    assignment = CaseAssignment(case_id=case_id, username=name, assigned_by=assigned_by)
    session.add(assignment)
    session.flush()
    return assignment


def unassign(session: Session, *, case_id: str, username: str) -> bool:
    """Remove an assignment; whether there was one."""
    result = session.execute(delete(CaseAssignment).where(CaseAssignment.case_id == case_id,
                                                          CaseAssignment.username == username.strip().lower()))
    return isinstance(result, CursorResult) and result.rowcount > 0


def assigned_case_ids(session: Session, *, username: str) -> set[str]:
    return set(session.scalars(select(CaseAssignment.case_id)
                               .where(CaseAssignment.username == username.strip().lower())).all())


def is_assigned(session: Session, *, case_id: str, username: str) -> bool:
    found = session.scalar(select(func.count()).select_from(CaseAssignment).where(
        CaseAssignment.case_id == case_id, CaseAssignment.username == username.strip().lower()))
    return bool(found)


def assignments_of_case(session: Session, *, case_id: str) -> Sequence[CaseAssignment]:
    return session.scalars(select(CaseAssignment).where(CaseAssignment.case_id == case_id)
                           .order_by(CaseAssignment.username)).all()

