"""Authenticated test clients: a Locard account with given roles, its bearer token, its case assignments."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.testclient import TestClient

from api.security import issue_access_token
from storage import accounts
from storage.db import transaction
from storage.roles import SUPERVISOR

V1 = "/api/v1"


def account(client: TestClient, username: str, roles: Sequence[str] = (SUPERVISOR,),
            cases: Sequence[str] = ()) -> dict[str, str]:
    """Create (or reuse) a user with `roles`, assign it to `cases` (ids), and return its Authorization header."""
    app = client.app
    with transaction(app.state.session_factory) as session:  # type: ignore[attr-defined]
        user = accounts.get_user_by_name(session, username=username)
        if user is None:
            user = accounts.create_user(session, username=username, password=None, roles=list(roles),
                                        created_by="test")
        for case_id in cases:
            accounts.assign(session, case_id=case_id, username=username, assigned_by="test")
        token, _ = issue_access_token(user_name=user.username, roles=user.roles, user_id=user.id,
                                      settings=app.state.settings)  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


def log_in(client: TestClient, username: str = "supervisor", roles: Sequence[str] = (SUPERVISOR,)) -> TestClient:
    """Make every later request of `client` carry this user's token."""
    client.headers.update(account(client, username, roles))
    return client


def purpose(case_reference: str, justification: str = "lead check for the burglary series") -> dict[str, str]:
    """The purpose headers naming `case_reference`."""
    return {"X-Locard-Purpose-Case": case_reference, "X-Locard-Purpose-Justification": justification}
