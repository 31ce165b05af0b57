"""Request and response schemas of authentication and administration (users, API keys, case assignments).

Password hashes and key secrets are never part of a response; the plaintext of an API key is shown once,
in the answer to its creation (`ApiKeyCreated.key`).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.base import ReadModel
from storage.roles import ROLES, Role

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"


class TokenResponse(BaseModel):
    """An OAuth 2.0 token response (RFC 6749 section 5.1), with the account's roles."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth token type, not a secret)
    expires_in: int
    refresh_token: str
    roles: list[str]


class TokenError(BaseModel):
    """An OAuth 2.0 error response (RFC 6749 section 5.2)."""

    error: str
    error_description: str


class UserCreate(BaseModel):
    """A new account; no password for a case system (it authenticates with API keys)."""

    username: str = Field(pattern=USERNAME_PATTERN, description="kept lower-case")
    display_name: str = Field(default="", max_length=200)
    password: str | None = Field(default=None, max_length=1024,
                                 description="12+ characters mixing at least two kinds (lower, upper, digit, other)")
    roles: list[Role] = Field(min_length=1, max_length=len(ROLES))


class UserRead(ReadModel):
    id: str
    username: str
    display_name: str
    roles: list[str]
    active: bool
    created_at: dt.datetime
    created_by: str
    has_password: bool


class PasswordReset(BaseModel):
    password: str = Field(max_length=1024)


class RolesUpdate(BaseModel):
    roles: list[Role] = Field(min_length=1, max_length=len(ROLES))


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="what the key is for, e.g. the case system's host")
    expires_at: dt.datetime | None = Field(default=None, description="UTC (a zone is required); none: no expiry")


class ApiKeyRead(ReadModel):
    id: str
    user_id: str
    name: str
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class ApiKeyCreated(ApiKeyRead):
    """The new key; `key` (`lk_<prefix>_<secret>`) is shown only here and cannot be recovered later."""

    key: str


class AssignmentRead(ReadModel):
    id: str
    case_id: str
    username: str
    assigned_by: str
    assigned_at: dt.datetime
