"""Passwords: Locard's policy for them, and how they are kept (argon2id hashes; never the password itself).

Plain functions without a database: `storage.accounts` applies them to accounts and password logins.
"""

from __future__ import annotations

import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything, but nobody needs more and it bounds the work per attempt

_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) defaults


def policy_violation(password: str, *, username: str = "") -> str | None:
    """Why the password does not meet the policy, or None when it does: at least 12 characters (at most 1024),
    of at least two classes (lower, upper, digit, other), and not the user name."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"a password has at most {MAX_PASSWORD_LENGTH} characters"
    classes = {"lower" if c.islower() else "upper" if c.isupper() else "digit" if c.isdigit() else "other"
               for c in password}
    if len(classes) < 2:
        return "a password must mix at least two kinds of characters (lower-case, upper-case, digits, others)"
    if username and password.strip().lower() == username.strip().lower():
        return "a password must not be the user name"
    return None


def hash_password(password: str) -> str:
    """The argon2id hash (with its salt and parameters) to keep instead of the password."""
    return _hasher.hash(password)


def matches(password_hash: str | None, password: str) -> bool:
    """Whether the password is the one hashed; False without a hash, which costs a verification all the same,
    so that an account without a password (or no account) takes as long to refuse as a wrong password."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than today's (rehash it at the next successful login)."""
    return _hasher.check_needs_rehash(password_hash)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash to verify against when there is no account, so that unknown users take as long as known ones."""
    return _hasher.hash(secrets.token_urlsafe(24))
