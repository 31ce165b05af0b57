"""API keys of case-system accounts (keyword-only data access).

A key reads `lk_<prefix>_<secret>`: the prefix (12 hex characters) finds the record, the secret (256 bits) is
kept only as its SHA-256 and compared in constant time. The plaintext is returned once, when the key is made.
A key acts as its account while both are in force; revoking it moves the account's revocation epoch on
(`storage.accounts.bump_token_epoch`), so that a principal cached for the key is checked again at once.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Sequence

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.accounts import AccountError, User, bump_token_epoch, hash_token
from storage.roles import CASE_SYSTEM
from storage.tables import Base, new_id, utcnow

API_KEY_PREFIX = "lk_"
MAX_KEY_LENGTH = 200
MAX_PREFIX_LENGTH = 16


class ApiKey(Base):
    """An API key of a case-system account: `lk_<prefix>_<secret>`; only the secret's SHA-256 is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(MAX_PREFIX_LENGTH), unique=True, index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column()


def create_api_key(session: Session, *, user: User, name: str,
                   expires_at: dt.datetime | None = None) -> tuple[ApiKey, str]:
    """A new API key for a case-system account, and its plaintext `lk_<prefix>_<secret>` (returned only here)."""
    if CASE_SYSTEM not in user.roles:
        raise AccountError(f"API keys are for case-system accounts; {user.username!r} is not one")
    if not user.active:
        raise AccountError(f"the account {user.username!r} is deactivated")
    while True:
        prefix = secrets.token_hex(6)  # 12 hex characters: never contains the '_' separator
        if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            break
    secret = secrets.token_urlsafe(32)  # 256 bits
    key = ApiKey(user_id=user.id, name=name, prefix=prefix, secret_hash=hash_token(secret), expires_at=expires_at)
    session.add(key)
    session.flush()
    return key, f"{API_KEY_PREFIX}{prefix}_{secret}"


def _split_api_key(key: str) -> tuple[str, str] | None:
    if not key.startswith(API_KEY_PREFIX) or len(key) > MAX_KEY_LENGTH:
        return None
    prefix, _, secret = key[len(API_KEY_PREFIX):].partition("_")
    if not prefix or not secret or len(prefix) > MAX_PREFIX_LENGTH:
        return None
    return prefix, secret


def resolve_api_key(session: Session, *, key: str) -> User | None:
    """The (active) account an API key acts as, or None for an unknown, revoked or expired key."""
    found = api_key_owner(session, key=key)
    return found[0] if found is not None else None


def api_key_owner(session: Session, *, key: str) -> tuple[User, ApiKey] | None:
    """The (active) account an API key acts as and the key's record, or None (unknown, revoked or expired)."""
    parts = _split_api_key(key.strip())
    if parts is None:
        return None
    prefix, secret = parts
    record = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if record is None or not hmac.compare_digest(record.secret_hash, hash_token(secret)):
        return None
    now = utcnow()
    if record.revoked_at is not None or (record.expires_at is not None and record.expires_at <= now):
        return None
    user = session.get(User, record.user_id)
    if user is None or not user.active:
        return None
    record.last_used_at = now
    session.flush()
    return user, record


def get_api_key(session: Session, *, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def list_api_keys(session: Session, *, user: User) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).where(ApiKey.user_id == user.id)
                           .order_by(ApiKey.created_at, ApiKey.id)).all()


def revoke_api_key(session: Session, *, key: ApiKey) -> None:
    """Revoke the key (idempotent: the first revocation time is kept); its owner's epoch moves on, so that a
    principal cached for the key is checked again at once."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        owner = session.get(User, key.user_id)
        if owner is not None:
            bump_token_epoch(session, user=owner)
        session.flush()
