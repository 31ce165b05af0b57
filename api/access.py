"""Access control and the audit trail of every request (EU Law Enforcement Directive 2016/680, Art. 25).

`AccessMiddleware` runs before routing, so that no request reaches a route (not even its body parser) without
a valid principal: only the health check, the token endpoint and the MinIO webhook (which carries its own
bearer token) are public. It opens an `AuditNote` for the request; routes and dependencies fill it in (the
case, the evidence item, the persons whose data was shown, the stated purpose). A request that succeeds is
logged in its own transaction (`api.deps.get_session`), so the data and the log of its consultation commit
together; a refused or failed request is logged here, with the reason, in a transaction of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.principal import Principal
from api.problems import problem_response
from api.security import AuthenticationFailed, authenticate
from storage import audit
from storage.settings import Settings

log = logging.getLogger("locard.access")
API_PREFIX = "/api/v1"
PUBLIC = frozenset({f"{API_PREFIX}/health", f"{API_PREFIX}/auth/token", f"{API_PREFIX}/auth/revoke"})
SELF_AUTHENTICATED = frozenset({f"{API_PREFIX}/intake/minio-events"})  # the webhook checks its own token
WEBHOOK_ACTOR = "minio-webhook"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="locard"'}
PRINCIPAL_CACHE_SECONDS = 5.0
PRINCIPAL_CACHE_SIZE = 10_000
ACTIONS_BY_METHOD = {"GET": "consultation", "HEAD": "consultation", "POST": "collection", "PUT": "alteration",
                     "PATCH": "alteration", "DELETE": "erasure"}


@dataclass
class AuditNote:
    """What one request did with personal data, filled in as the request is served."""

    method: str
    path: str
    client: str
    action: str
    actor: str = "anonymous"
    roles: tuple[str, ...] = ()
    resource_id: str | None = None
    case_id: str | None = None
    persons: list[str] = field(default_factory=list)
    purpose_case: str | None = None
    justification: str | None = None
    recipients: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    written: bool = False

    def write(self, session: Session, *, outcome: str, status: int | None = None) -> None:
        """Add this request's audit entries (one per person whose data it showed) to `session`."""
        resource = f"{self.method} {self.path}"
        detail = {**self.detail, "client": self.client, **({"status": status} if status is not None else {})}
        recipients = self.recipients or ([self.actor] if self.action in ("consultation", "disclosure") else [])
        persons: list[str | None] = list(self.persons) or [None]
        for person in persons:
            audit.record(session, actor=self.actor, roles=self.roles, action=self.action, resource=resource,
                         resource_id=self.resource_id, case_id=self.case_id, person=person,
                         purpose_case=self.purpose_case, justification=self.justification, recipients=recipients,
                         outcome=outcome, detail=detail)


def note_of(request: Request) -> AuditNote | None:
    """The audit note of the request being served (None outside the API)."""
    note = getattr(request.state, "audit", None)
    return note if isinstance(note, AuditNote) else None


def note_persons(request: Request, persons: Sequence[str]) -> None:
    """Record that these data subjects' data (e.g. national numbers) was shown by this request."""
    note = note_of(request)
    if note is not None:
        note.persons.extend(person for person in persons if person not in note.persons)


class AccessMiddleware:
    """Authenticates every API request before routing, and logs the ones their route did not log (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Principals of recently checked credentials, for PRINCIPAL_CACHE_SECONDS: a deactivated account or a
        # removed role takes effect within that time (never longer; tokens and keys are re-checked after it).
        self._recent: dict[str, tuple[float, Principal]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(API_PREFIX) or path == f"{API_PREFIX}/health":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        action = ACTIONS_BY_METHOD.get(request.method, "consultation")
        if path.startswith(f"{API_PREFIX}/admin/") and action == "collection":
            action = "alteration"  # accounts, keys and assignments are changed, not collected
        note = AuditNote(method=request.method, path=path, client=_client(request), action=action)
        request.state.audit = note
        if path in PUBLIC:
            note.action = "authentication"
        elif path in SELF_AUTHENTICATED:
            note.actor, note.roles = WEBHOOK_ACTOR, ("webhook",)
        else:
            refusal = await self._authenticate(request, note)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        status: list[int] = []

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if not note.written:
                code = status[0] if status else 500
                outcome = "ok" if code < 400 else "denied" if code < 500 else "error"
                note.path = route_template(request)
                await run_in_threadpool(self._log, request, note, outcome, code, {})

    async def _authenticate(self, request: Request, note: AuditNote) -> Response | None:
        """Set the request's principal; or the 401 answer (logged) when there is none."""
        credential = request.headers.get("authorization") or request.headers.get("x-api-key") or ""
        cached = self._recent.get(credential) if credential else None
        if cached is not None and cached[0] > time.monotonic():
            request.state.principal = cached[1]
            note.actor, note.roles = cached[1].name, tuple(cached[1].role_list)
            return None
        try:
            principal = await run_in_threadpool(self._principal, request)
        except AuthenticationFailed as exc:
            await run_in_threadpool(self._log, request, note, "denied", 401, {"reason": str(exc)})
            return problem_response(request, 401, "Invalid credentials", str(exc), headers=BEARER_CHALLENGE)
        if principal is None:
            await run_in_threadpool(self._log, request, note, "denied", 401, {"reason": "no credentials"})
            return problem_response(request, 401, "Authentication required",
                                    "Send a bearer token (POST /api/v1/auth/token) or an API key.",
                                    headers=BEARER_CHALLENGE)
        request.state.principal = principal
        note.actor, note.roles = principal.name, tuple(principal.role_list)
        if len(self._recent) >= PRINCIPAL_CACHE_SIZE:
            self._recent.clear()
        self._recent[credential] = (time.monotonic() + PRINCIPAL_CACHE_SECONDS, principal)
        return None

    @staticmethod
    def _principal(request: Request) -> Principal | None:
        settings: Settings = request.app.state.settings
        with request.app.state.session_factory() as session:
            return authenticate(request, session, settings)

    @staticmethod
    def _log(request: Request, note: AuditNote, outcome: str, status: int, detail: dict[str, Any]) -> None:
        note.detail.update(detail)
        try:
            with request.app.state.session_factory() as session, session.begin():
                note.write(session, outcome=outcome, status=status)
            note.written = True
        except Exception:  # the answer is already decided; a failed log must be visible to operators
            log.exception("could not write the audit entry of %s %s", note.method, note.path)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def route_template(request: Request) -> str:
    """The route's path template (`/api/v1/evidence/{evidence_id}`), or the raw path before routing."""
    route = request.scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not template:
        return request.url.path
    return str(template) if str(template).startswith(API_PREFIX) else f"{API_PREFIX}{template}"
