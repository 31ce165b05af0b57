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
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.clientaddr import client_address
from api.principal import Principal
from api.principal_cache import PrincipalCache
from api.problems import problem_response
from api.security import AuthenticationFailed, authenticate, credential_of, still_valid
from storage import audit, matching, records
from storage.db import reading
from storage.settings import Settings

log = logging.getLogger("locard.access")
API_PREFIX = "/api/v1"
PUBLIC = frozenset({f"{API_PREFIX}/health", f"{API_PREFIX}/auth/token", f"{API_PREFIX}/auth/revoke"})
SELF_AUTHENTICATED = frozenset({f"{API_PREFIX}/intake/minio-events"})  # the webhook checks its own token
WEBHOOK_ACTOR = "minio-webhook"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="locard"'}
PRINCIPAL_CACHE_SECONDS = 5.0
PRINCIPAL_CACHE_SIZE = 10_000
# Path parameters naming the resource a request asked for, most specific first (the case goes to `case_id`).
RESOURCE_PARAMS = ("evidence_id", "finding_id", "request_id", "key_id", "username", "person_id", "vehicle_id",
                   "watchlist_id", "match_id", "case_id")
MAX_REQUESTED_ID = 200  # longer ids named in a path are cut (the audit log's resource_id holds 200 characters)
MAX_CASE_ID = 36  # Locard's ids: a longer "case id" is not one, and is kept in the detail only
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
        resource = f"{self.method} {self.path}"[:MAX_REQUESTED_ID]  # a raw path (no route matched) may be long
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
        # Principals of recently checked credentials, keyed on the credential used; each is re-checked against
        # its account's revocation epoch before it serves (api.principal_cache).
        self._recent = PrincipalCache(seconds=PRINCIPAL_CACHE_SECONDS, size=PRINCIPAL_CACHE_SIZE)

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
        try:
            credential = credential_of(request)  # the one `authenticate` uses: the cache is keyed on it
            cached = self._recent.get(credential.cache_key) if credential is not None else None
            if cached is not None and await run_in_threadpool(self._still_valid, request, cached):
                principal: Principal | None = cached
            else:
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
        if credential is not None and principal is not cached:
            self._recent.put(credential.cache_key, principal)
        return None

    @staticmethod
    def _principal(request: Request) -> Principal | None:
        settings: Settings = request.app.state.settings
        with request.app.state.session_factory() as session, session.begin():  # commits an API key's last use
            return authenticate(request, session, settings)

    @staticmethod
    def _still_valid(request: Request, principal: Principal) -> bool:
        with reading(request.app.state.session_factory) as session:  # on SQLite: no write lock for a read
            return still_valid(session, principal)

    @staticmethod
    def _log(request: Request, note: AuditNote, outcome: str, status: int, detail: dict[str, Any]) -> None:
        note.detail.update(detail)
        try:
            note_requested(request, note)
        except Exception:  # naming the target is a refinement: the entry is written without it
            log.exception("could not name what %s %s asked for", note.method, note.path)
        try:
            with request.app.state.session_factory() as session, session.begin():
                if note.case_id is None:  # an item of a case the caller may not see: name that case to auditors
                    note.case_id = case_of_requested(session, note.detail.get("requested", {}))
                note.write(session, outcome=outcome, status=status)
            note.written = True
        except Exception:  # the answer is already decided; a failed log must be visible to operators
            log.exception("could not write the audit entry of %s %s", note.method, note.path)


def _client(request: Request) -> str:
    settings: Settings | None = getattr(request.app.state, "settings", None)
    if settings is None:
        return request.client.host if request.client else "unknown"
    return client_address(request, settings)


def note_requested(request: Request, note: AuditNote) -> None:
    """Name what a refused or failed request asked for: its path's ids (as `case_id` and `resource_id` where the
    route did not set them, and all of them under `detail["requested"]`), and its route template as the path."""
    template, params = _matched(request)
    if template is None:
        return
    note.path = template
    # An id cut to the audit log's width, a NUL written as U+FFFD (no record store id holds one; PostgreSQL
    # cannot even look one up).
    params = {name: value[:MAX_REQUESTED_ID].replace("\x00", "\ufffd") for name, value in params.items()}
    if not params:
        return
    note.detail["requested"] = {**params, **note.detail.get("requested", {})}
    if note.case_id is None and "case_id" in params and len(params["case_id"]) <= MAX_CASE_ID:
        note.case_id = params["case_id"]
    if note.resource_id is None:
        note.resource_id = next((params[name] for name in RESOURCE_PARAMS if name in params), None)


def case_of_requested(session: Session, requested: dict[str, Any]) -> str | None:
    """The case of the evidence item, finding or match request a request named, if it exists."""
    evidence_id = requested.get("evidence_id") or requested.get("probe_evidence_id")
    if isinstance(evidence_id, str) and (evidence := records.get_evidence(session, evidence_id=evidence_id)):
        return evidence.case_id
    finding_id = requested.get("finding_id")
    if isinstance(finding_id, str) and (finding := records.get_finding(session, finding_id=finding_id)):
        return finding.case_id
    request_id = requested.get("request_id")
    if isinstance(request_id, str) and (match := matching.get_request(session, request_id=request_id)):
        probe = records.get_evidence(session, evidence_id=match.probe_evidence_id)
        return probe.case_id if probe is not None else None
    return None


def note_requested_ids(request: Request, **ids: Any) -> None:
    """Name ids a request asked for in its query or body (e.g. a search's `case_ids`), for the audit log."""
    note = note_of(request)
    if note is not None:
        requested = note.detail.setdefault("requested", {})
        requested.update({name: value for name, value in ids.items() if value is not None})


def _matched(request: Request) -> tuple[str | None, dict[str, str]]:
    """The path template of the route that served (or, before routing, would serve) this request, and its path
    parameters; (None, {}) when no route has this path."""
    if request.scope.get("route") is not None:
        return route_template(request), {k: str(v) for k, v in request.path_params.items()}
    app = request.scope.get("app")
    if app is None:
        return None, {}
    for regex, template in _path_patterns(app):
        found = regex.match(request.url.path)
        if found:
            return template, found.groupdict()
    return None, {}


def _path_patterns(app: Any) -> list[tuple[re.Pattern[str], str]]:
    """The app's path templates (from its OpenAPI document) as patterns, literal segments first; built once."""
    patterns: list[tuple[re.Pattern[str], str]] | None = getattr(app.state, "path_patterns", None)
    if patterns is None:
        paths = sorted(app.openapi().get("paths", {}), key=lambda path: (path.count("{"), -len(path)))
        patterns = [(re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$"), path)
                    for path in paths]
        app.state.path_patterns = patterns
    return patterns


def route_template(request: Request) -> str:
    """The route's path template (`/api/v1/evidence/{evidence_id}`), or the raw path before routing."""
    route = request.scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not template:
        return request.url.path
    return str(template) if str(template).startswith(API_PREFIX) else f"{API_PREFIX}{template}"
