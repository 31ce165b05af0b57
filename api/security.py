"""Authentication: Locard's access tokens, API keys and OpenID Connect tokens, turned into a `Principal`.

Each credential has one source and a fixed set of algorithms: Locard's own tokens are HS256 under
`settings.token_key` only; OpenID Connect tokens are RS*/PS*/ES* under the provider's published keys only
(an HS256 token "signed" with a provider's public key, or `alg: none`, is refused).

Locard's access tokens carry their account's revocation epoch (`tep`) and are refused once it has moved on
(`storage.accounts.bump_token_epoch`). A principal holding administrator together with a case-data role is
refused, whatever its source (separation of duties, `storage.roles.role_conflict`).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.principal import Principal
from storage import accounts, apikeys
from storage.accounts import hash_token
from storage.roles import ROLES, role_conflict
from storage.settings import Settings

ISSUER = "locard"
AUDIENCE = "locard-api"
LOCARD_ALGORITHMS = ("HS256",)
OIDC_ALGORITHMS = {"RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), "EC": ("ES256", "ES384", "ES512")}
OIDC_LEEWAY_SECONDS = 30  # clock skew between Locard and the provider
MAX_TOKEN_LENGTH = 16_384

__all__ = ["AUDIENCE", "ISSUER", "AuthenticationFailed", "Credential", "authenticate", "credential_of", "hash_token",
           "issue_access_token", "still_valid"]


class AuthenticationFailed(Exception):
    """Credentials were presented but are not valid (malformed, expired, revoked, unknown, wrong signature)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Credential:
    """The credential a request authenticates with: an API key or a bearer token."""

    kind: str  # "api_key" | "bearer"
    value: str

    @property
    def cache_key(self) -> str:
        """A digest naming this credential (for caches; the secret itself is not kept)."""
        return hash_token(f"{self.kind}:{self.value}")


def issue_access_token(*, user_name: str, roles: Sequence[str], user_id: str | None, settings: Settings,
                       epoch: int = 0) -> tuple[str, int]:
    """A Locard access token (HS256) and its lifetime in seconds.

    Claims: iss "locard", aud "locard-api", sub (user name), roles (informative: requests take the roles
    from the account), uid (the account id), tep (the account's revocation epoch), iat, nbf, exp, jti.
    """
    lifetime = settings.access_token_minutes * 60
    now = dt.datetime.now(dt.UTC)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": user_name, "roles": sorted(roles), "uid": user_id,
              "tep": epoch, "iat": now, "nbf": now, "exp": now + dt.timedelta(seconds=lifetime),
              "jti": secrets.token_hex(16)}
    return jwt.encode(claims, settings.token_key, algorithm="HS256"), lifetime


def _api_key_of(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key is not None:
        return key.strip()
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    return value.strip() if scheme.lower() == "apikey" else None


def _bearer_of(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthenticationFailed(f"unsupported authorization scheme {scheme[:20]!r}; use Bearer or ApiKey")
    if not value.strip():
        raise AuthenticationFailed("the bearer token is empty")
    return value.strip()


def credential_of(request: Request) -> Credential | None:
    """The credential `authenticate` uses: an API key (`X-API-Key`, else `Authorization: ApiKey`) before a
    bearer token. None when there is none; `AuthenticationFailed` for an unsupported or empty one."""
    key = _api_key_of(request)
    if key is not None:
        return Credential("api_key", key)
    token = _bearer_of(request)
    return Credential("bearer", token) if token is not None else None


def authenticate(request: Request, session: Session, settings: Settings) -> Principal | None:
    """The caller, from an API key (`X-API-Key` or `Authorization: ApiKey`) or a bearer token.

    None when the request carries no credentials; `AuthenticationFailed` when it carries invalid ones.
    """
    credential = credential_of(request)
    if credential is None:
        return None
    return _separated(_principal_of(credential, session, settings))


def _separated(principal: Principal) -> Principal:
    """The principal, unless it holds administrator together with case-data roles (legacy data, or a provider)."""
    conflicting = role_conflict(principal.roles)
    if conflicting:
        raise AuthenticationFailed(f"the account holds administrator together with {', '.join(conflicting)}; "
                                   "an administrator holds no case-data role (change its roles with "
                                   "`locard users roles`)")
    return principal


def still_valid(session: Session, principal: Principal) -> bool:
    """Whether a principal checked earlier still stands: its account active, its revocation epoch unchanged.

    A cheap look-up by primary key, for cached principals; True for a principal without a local account.
    """
    if principal.user_id is None:
        return True
    row = session.execute(select(accounts.User.token_epoch, accounts.User.active)
                          .where(accounts.User.id == principal.user_id)).one_or_none()
    return row is not None and bool(row.active) and row.token_epoch == principal.epoch


def _principal_of(credential: Credential, session: Session, settings: Settings) -> Principal:
    if credential.kind == "api_key":
        found = apikeys.api_key_owner(session, key=credential.value)
        if found is None:
            raise AuthenticationFailed("the API key is unknown, revoked or expired")
        user, key = found
        return Principal(name=user.username, roles=frozenset(user.roles), kind="api_key", user_id=user.id,
                         epoch=user.token_epoch, expires_at=key.expires_at)
    token = credential.value
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthenticationFailed("the bearer token is too long")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthenticationFailed("the bearer token is not a valid JWT") from None
    issuer = unverified.get("iss")
    if issuer == ISSUER:
        return _locard_principal(token, session, settings)
    if settings.oidc_issuer and issuer == settings.oidc_issuer:
        return _oidc_principal(token, session, settings)
    raise AuthenticationFailed("the bearer token's issuer is not accepted")


def _locard_principal(token: str, session: Session, settings: Settings) -> Principal:
    try:
        claims = jwt.decode(token, settings.token_key, algorithms=list(LOCARD_ALGORITHMS), audience=AUDIENCE,
                            issuer=ISSUER, options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]})
    except jwt.ExpiredSignatureError:
        raise AuthenticationFailed("the access token has expired") from None
    except jwt.PyJWTError as exc:
        raise AuthenticationFailed(f"the access token is not valid ({type(exc).__name__})") from None
    uid, sub = claims.get("uid"), claims.get("sub")
    user = (accounts.get_user(session, user_id=uid) if isinstance(uid, str)
            else accounts.get_user_by_name(session, username=str(sub)))
    if user is None or user.username != sub:
        raise AuthenticationFailed("the access token's account does not exist")
    if not user.active:
        raise AuthenticationFailed("the account is deactivated")
    epoch = claims.get("tep")
    if isinstance(epoch, bool) or epoch != user.token_epoch:
        raise AuthenticationFailed("the access token was revoked (a logout, a password or role change, or a "
                                   "replayed refresh token); obtain a new one")
    return Principal(name=user.username, roles=frozenset(user.roles), kind="user", user_id=user.id,
                     epoch=user.token_epoch, expires_at=dt.datetime.fromtimestamp(claims["exp"], dt.UTC))


# --- OpenID Connect -----------------------------------------------------------------------------------------------

_lock = threading.Lock()
_jwks_clients: dict[str, jwt.PyJWKClient] = {}
_jwks_files: dict[str, tuple[float, list[jwt.PyJWK]]] = {}


def _file_keys(path: str) -> list[jwt.PyJWK]:
    """The usable public keys of a JWKS file, cached until the file changes."""
    file = Path(path)
    mtime = file.stat().st_mtime
    with _lock:
        cached = _jwks_files.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
    data = json.loads(file.read_text())
    keys = []
    for entry in data.get("keys", []) if isinstance(data, dict) else []:
        if not isinstance(entry, dict) or entry.get("kty") not in OIDC_ALGORITHMS or entry.get("use", "sig") != "sig":
            continue
        try:
            keys.append(jwt.PyJWK(entry))
        except jwt.PyJWTError:
            continue
    with _lock:
        _jwks_files[path] = (mtime, keys)
    return keys


def _oidc_key(token: str, settings: Settings) -> jwt.PyJWK:
    kid = jwt.get_unverified_header(token).get("kid")
    if settings.oidc_jwks_url:
        with _lock:
            client = _jwks_clients.setdefault(settings.oidc_jwks_url,
                                              jwt.PyJWKClient(settings.oidc_jwks_url, cache_keys=True, timeout=10))
        try:
            return client.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientError as exc:
            raise AuthenticationFailed(f"no signing key of the identity provider fits the token ({exc})") from None
    try:
        keys = _file_keys(settings.oidc_jwks_file)
    except (OSError, ValueError):
        raise AuthenticationFailed("the identity provider's keys cannot be read") from None
    matching = [k for k in keys if k.key_id == kid] if kid is not None else keys
    if len(matching) != 1:
        raise AuthenticationFailed("no signing key of the identity provider fits the token")
    return matching[0]


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name, or by a dotted path into nested claims (`realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _oidc_principal(token: str, session: Session, settings: Settings) -> Principal:
    if not settings.oidc_audience:
        raise AuthenticationFailed("identity provider tokens are refused: LOCARD_OIDC_AUDIENCE is not set")
    try:
        key = _oidc_key(token, settings)
        algorithms = OIDC_ALGORITHMS.get(key.key_type or "", ())
        claims = jwt.decode(token, key.key, algorithms=list(algorithms), audience=settings.oidc_audience,
                            issuer=settings.oidc_issuer, leeway=OIDC_LEEWAY_SECONDS,
                            options={"require": ["exp", "iss", "aud"]})
    except jwt.ExpiredSignatureError:
        raise AuthenticationFailed("the identity provider's token has expired") from None
    except jwt.PyJWTError as exc:
        raise AuthenticationFailed(f"the identity provider's token is not valid ({type(exc).__name__})") from None
    username = _claim(claims, settings.oidc_username_claim)
    if not isinstance(username, str) or not username.strip():
        raise AuthenticationFailed(f"the token has no {settings.oidc_username_claim!r} claim")
    name = username.strip().lower()
    raw_roles = _claim(claims, settings.oidc_roles_claim)
    if isinstance(raw_roles, str):
        raw_roles = raw_roles.split()
    roles = frozenset(r for r in raw_roles if isinstance(r, str) and r in ROLES) if isinstance(raw_roles, list) \
        else frozenset()
    # A local account of the same name can switch an external user off.
    local = accounts.get_user_by_name(session, username=name)
    if local is not None and not local.active:
        raise AuthenticationFailed("the account is deactivated")
    expires = claims["exp"] if isinstance(claims["exp"], int | float) else None
    return Principal(name=name, roles=roles, kind="oidc", user_id=local.id if local is not None else None,
                     epoch=local.token_epoch if local is not None else None,
                     expires_at=dt.datetime.fromtimestamp(expires, dt.UTC) if expires is not None else None)
