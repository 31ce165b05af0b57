"""OAuth 2.0 token endpoint (password and refresh-token grants) and refresh-token revocation.

Errors follow RFC 6749 section 5.2 (`{"error", "error_description"}`), not problem details, so that OAuth
clients understand them. Refusals are answered, not raised, so that the failed attempt (or the revocation of
a replayed token's sessions) is committed with the request's transaction.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.access import note_of, route_template
from api.clientaddr import client_address
from api.deps import SessionDep, SettingsDep
from api.schemas.accounts import TokenError, TokenResponse
from api.security import issue_access_token
from storage import accounts

router = APIRouter(prefix="/auth", tags=["auth"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_FIELD = 4096
OptionalForm = Annotated[str | None, Form()]


def _error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={**NO_STORE, **(headers or {})})


def _refused(request: Request, session: Session, exc: accounts.LoginRefused) -> JSONResponse:
    """The refusal, written to the audit log as denied (with its reason) in the request's transaction, which
    also keeps the failed attempt's count."""
    status = 429 if exc.retry_after is not None else 400
    note = note_of(request)
    if note is not None and not note.written:
        note.detail["reason"] = exc.reason
        note.path = route_template(request)
        note.write(session, outcome="denied", status=status)
        note.written = True
    if exc.retry_after is not None:
        return _error(status, "invalid_grant", exc.reason, {"Retry-After": str(exc.retry_after)})
    return _error(status, "invalid_grant", exc.reason)


@router.post("/token", response_model=TokenResponse,
             responses={400: {"model": TokenError}, 429: {"model": TokenError}},
             summary="Obtain an access token (grant_type password or refresh_token)")
def token(request: Request, session: SessionDep, settings: SettingsDep, grant_type: OptionalForm = None,
          username: OptionalForm = None, password: OptionalForm = None,
          refresh_token: OptionalForm = None) -> JSONResponse:
    """`application/x-www-form-urlencoded`, as OAuth 2.0 asks: `grant_type=password` with `username` and
    `password`, or `grant_type=refresh_token` with `refresh_token`. Every use of a refresh token returns a new
    one; presenting a used one again revokes every session of its user."""
    if any(value is not None and len(value) > MAX_FIELD for value in (grant_type, username, password, refresh_token)):
        return _error(400, "invalid_request", "a form field is too long")
    client = client_address(request, settings)  # the one rule for the client's address (api.clientaddr)
    try:
        if grant_type == "password":
            if not username or password is None:
                return _error(400, "invalid_request", "the password grant needs username and password")
            note = note_of(request)
            if note is not None:
                note.detail["username"] = username.strip().lower()[:100]  # who was tried, for the audit log
            user = accounts.verify_password(session, username=username, password=password, client=client,
                                            settings=settings)
            new_refresh = accounts.issue_refresh_token(session, user=user, settings=settings)
        elif grant_type == "refresh_token":
            if not refresh_token:
                return _error(400, "invalid_request", "the refresh_token grant needs refresh_token")
            user, new_refresh = accounts.rotate_refresh_token(session, token=refresh_token, settings=settings)
        elif not grant_type:
            return _error(400, "invalid_request", "grant_type is required")
        else:
            return _error(400, "unsupported_grant_type", "grant_type is password or refresh_token")
    except accounts.LoginRefused as exc:
        return _refused(request, session, exc)
    access, expires_in = issue_access_token(user_name=user.username, roles=user.roles, user_id=user.id,
                                            settings=settings, epoch=user.token_epoch)
    body = TokenResponse(access_token=access, expires_in=expires_in, refresh_token=new_refresh,
                         roles=sorted(user.roles))
    return JSONResponse(body.model_dump(), headers=NO_STORE)


@router.post("/revoke", responses={400: {"model": TokenError}}, summary="Revoke a refresh token (log out)")
def revoke(session: SessionDep, token: OptionalForm = None,
           token_type_hint: OptionalForm = None) -> JSONResponse:
    """RFC 7009: form field `token` (a refresh token). Answers 200 whether or not the token was known. A known
    token also ends its user's access tokens (every one of them: other sessions refresh theirs)."""
    if not token:
        return _error(400, "invalid_request", "token is required")
    if len(token) <= MAX_FIELD:
        accounts.revoke_refresh_token(session, token=token)
    return JSONResponse({}, headers=NO_STORE)
