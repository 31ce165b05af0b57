"""Administration: accounts and API keys (administrators), case assignments (administrators and supervisors).

Separation of duties. An administrator manages accounts and sees no case data, and cannot give itself any:

* nobody changes their own roles (403), so an administrator cannot grant itself a role, nor drop
  administrator and take others in one request;
* no account holds administrator together with a role that works with case data (investigator,
  forensic_examiner, supervisor, case_system): creating or changing an account to hold both is refused (422),
  and so is a principal holding both (`api.security`), so a second account "for oneself" with both roles
  cannot exist, and API keys (for case-system accounts only) never act as an administrator.

Every refusal is answered with problem details and written to the audit log with its reason.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from api.deps import SessionDep, refusal, require_roles
from api.principal import Principal
from api.problems import Problem
from api.schemas.accounts import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    AssignmentRead,
    PasswordReset,
    RolesUpdate,
    UserCreate,
    UserRead,
)
from storage import accounts, apikeys, records
from storage.roles import ADMINISTRATOR, SUPERVISOR

router = APIRouter(prefix="/admin", tags=["administration"])
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=1000)]
UserName = Annotated[str, Path(max_length=100)]
CaseId = Annotated[str, Path(max_length=64)]
ACCOUNT_ROLES = (ADMINISTRATOR,)
ASSIGNMENT_ROLES = (ADMINISTRATOR, SUPERVISOR)
AccountManager = Annotated[Principal, require_roles(*ACCOUNT_ROLES)]
AssignmentManager = Annotated[Principal, require_roles(*ASSIGNMENT_ROLES)]


def _is_self(principal: Principal, user: accounts.User) -> bool:
    return user.id == principal.user_id or user.username == principal.name


def _user_read(user: accounts.User) -> UserRead:
    return UserRead(id=user.id, username=user.username, display_name=user.display_name, roles=list(user.roles),
                    active=user.active, created_at=user.created_at, created_by=user.created_by,
                    has_password=user.password_hash is not None)


def _load_user(session: SessionDep, username: str) -> accounts.User:
    user = accounts.get_user_by_name(session, username=username)
    if user is None:
        raise Problem(404, "User not found", f"There is no user {username!r}.")
    return user


def _invalid(request: Request, exc: accounts.AccountError) -> Problem:
    title = ("Weak password" if isinstance(exc, accounts.WeakPassword)
             else "Conflicting roles" if isinstance(exc, accounts.RoleConflict) else "Invalid account")
    return refusal(request, 422, title, str(exc))


# --- users --------------------------------------------------------------------------------------------------------


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserRead)
def create_user(request: Request, body: UserCreate, session: SessionDep, principal: AccountManager) -> UserRead:
    try:
        user = accounts.create_user(session, username=body.username, password=body.password, roles=body.roles,
                                    display_name=body.display_name, created_by=principal.name)
    except accounts.DuplicateUser as exc:
        raise refusal(request, 409, "User exists", str(exc)) from None
    except accounts.AccountError as exc:
        raise _invalid(request, exc) from None
    return _user_read(user)


@router.get("/users", response_model=list[UserRead])
def list_users(session: SessionDep, principal: AccountManager, offset: Offset = 0,
               limit: Limit = 100) -> list[UserRead]:
    return [_user_read(u) for u in accounts.list_users(session, offset=offset, limit=limit)]


@router.get("/users/{username}", response_model=UserRead)
def get_user(username: UserName, session: SessionDep, principal: AccountManager) -> UserRead:
    return _user_read(_load_user(session, username))


@router.post("/users/{username}/deactivate", response_model=UserRead)
def deactivate_user(request: Request, username: UserName, session: SessionDep, principal: AccountManager) -> UserRead:
    """Deactivate the account: its access tokens and API keys stop working at once, its sessions end."""
    user = _load_user(session, username)
    if _is_self(principal, user):
        raise refusal(request, 409, "Cannot deactivate yourself",
                      "An administrator cannot deactivate their own account.")
    accounts.deactivate_user(session, user=user)
    return _user_read(user)


@router.put("/users/{username}/password", status_code=status.HTTP_204_NO_CONTENT)
def reset_password(request: Request, username: UserName, body: PasswordReset, session: SessionDep,
                   principal: AccountManager) -> Response:
    """Set a new password; the user's sessions end (refresh tokens, and access tokens issued before)."""
    user = _load_user(session, username)
    try:
        accounts.set_password(session, user=user, password=body.password)
    except accounts.AccountError as exc:
        raise _invalid(request, exc) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/users/{username}/roles", response_model=UserRead)
def set_roles(request: Request, username: UserName, body: RolesUpdate, session: SessionDep,
              principal: AccountManager) -> UserRead:
    """Replace the user's roles; their access tokens issued before are refused from now on.

    Refused: your own roles (403), and administrator together with a case-data role (422)."""
    user = _load_user(session, username)
    if _is_self(principal, user):
        raise refusal(request, 403, "Cannot change your own roles",
                      "Nobody changes their own roles; another administrator must do it.")
    try:
        accounts.set_roles(session, user=user, roles=body.roles)
    except accounts.AccountError as exc:
        raise _invalid(request, exc) from None
    return _user_read(user)


# --- API keys -----------------------------------------------------------------------------------------------------


@router.post("/users/{username}/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
def create_api_key(request: Request, username: UserName, body: ApiKeyCreate, session: SessionDep,
                   principal: AccountManager) -> ApiKeyCreated:
    """A new API key for a case-system account; the key is in this answer only."""
    user = _load_user(session, username)
    if body.expires_at is not None and body.expires_at.tzinfo is None:
        raise refusal(request, 422, "Invalid request", "expires_at needs a time zone (UTC).")
    try:
        key, plaintext = apikeys.create_api_key(session, user=user, name=body.name, expires_at=body.expires_at)
    except accounts.AccountError as exc:
        raise _invalid(request, exc) from None
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=plaintext)


@router.get("/users/{username}/api-keys", response_model=list[ApiKeyRead])
def list_api_keys(username: UserName, session: SessionDep, principal: AccountManager) -> list[ApiKeyRead]:
    user = _load_user(session, username)
    return [ApiKeyRead.model_validate(k) for k in apikeys.list_api_keys(session, user=user)]


@router.post("/api-keys/{key_id}/revoke", response_model=ApiKeyRead)
def revoke_api_key(key_id: Annotated[str, Path(max_length=36)], session: SessionDep,
                   principal: AccountManager) -> ApiKeyRead:
    key = apikeys.get_api_key(session, key_id=key_id)
    if key is None:
        raise Problem(404, "API key not found", f"There is no API key {key_id}.")
    apikeys.revoke_api_key(session, key=key)
    return ApiKeyRead.model_validate(key)


# --- case assignments ---------------------------------------------------------------------------------------------


def _case_id(session: SessionDep, case_id: str) -> str:
    case = records.get_case(session, case_id=case_id)
    if case is None:
        raise Problem(404, "Case not found", f"There is no case {case_id}.")
    return case.id


@router.get("/cases/{case_id}/assignments", response_model=list[AssignmentRead])
def list_assignments(case_id: CaseId, session: SessionDep, principal: AssignmentManager) -> list[AssignmentRead]:
    found = accounts.assignments_of_case(session, case_id=_case_id(session, case_id))
    return [AssignmentRead.model_validate(a) for a in found]


@router.put("/cases/{case_id}/assignments/{username}", response_model=AssignmentRead)
def assign(request: Request, case_id: CaseId, username: UserName, session: SessionDep,
           principal: AssignmentManager) -> AssignmentRead:
    """Assign a user (a local account or an OpenID Connect user, by name) to the case; idempotent."""
    try:
        assignment = accounts.assign(session, case_id=_case_id(session, case_id), username=username,
                                     assigned_by=principal.name)
    except accounts.AccountError as exc:
        raise _invalid(request, exc) from None
    return AssignmentRead.model_validate(assignment)


@router.delete("/cases/{case_id}/assignments/{username}", status_code=status.HTTP_204_NO_CONTENT)
def unassign(case_id: CaseId, username: UserName, session: SessionDep, principal: AssignmentManager) -> Response:
    if not accounts.unassign(session, case_id=_case_id(session, case_id), username=username):
        raise Problem(404, "Assignment not found", f"{username!r} is not assigned to case {case_id}.")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
