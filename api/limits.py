"""Request limits, enforced before a body is parsed (pure ASGI).

Every body but the streamed evidence upload is capped (`Settings.max_json_bytes`): a declared Content-Length over
the cap is refused before a byte is read, and a body without one is refused as soon as it passes the cap. Every
body, the upload's included, must keep arriving: a wait for its next piece longer than
`Settings.body_read_timeout_seconds` ends the request with 408, so a client that declares more than it sends
holds nothing.

A NUL character is refused (400) wherever it could reach the record store: in the path, in the query, and in a
JSON or form body (as the escape `\u0000` or `%00`; a raw NUL in JSON is malformed anyway). No Locard field
holds one, and PostgreSQL cannot store one in text: let through, it would fail the request after routing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response


class BodyRefused(HTTPException):
    """A request body refused while it was read (too large, or stalled)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(status_code=status, detail=detail)
        self.title = title


def too_large(limit: int) -> BodyRefused:
    return BodyRefused(413, "Request body too large",
                       f"This request's body is limited to {limit} bytes; evidence files are uploaded with "
                       "POST /api/v1/cases/{case_id}/evidence or a presigned upload.")


NUL_REFUSED = ("Invalid character", "A NUL character is not accepted in a request's path, query or body.")
_NUL_IN_BODY = {"application/json": b"\\u0000", "application/x-www-form-urlencoded": b"%00"}


def _nul_in_target(scope: Scope) -> bool:
    query = bytes(scope.get("query_string", b"")).lower()
    return "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query


class RequestLimitsMiddleware:
    """Caps request bodies (except the streamed uploads in `streamed`) and times out stalled ones."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, read_timeout: float,
                 streamed: Sequence[tuple[str, re.Pattern[str]]] = ()) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout
        self.streamed = tuple(streamed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope.get("method", "GET"), scope.get("path", "")
        capped = not any(method == m and pattern.match(path) for m, pattern in self.streamed)
        headers = Headers(scope=scope)
        if _nul_in_target(scope):
            await self._refuse(scope, receive, send, BodyRefused(400, *NUL_REFUSED))
            return
        needle = _NUL_IN_BODY.get(headers.get("content-type", "").split(";")[0].strip().lower()) if capped else None
        tail = b""
        declared = headers.get("content-length")
        if declared is not None and not declared.isdigit():
            await self._refuse(scope, receive, send, BodyRefused(400, "Invalid Content-Length",
                                                                 "Content-Length must be a number of bytes."))
            return
        if capped and declared is not None and int(declared) > self.max_body_bytes:
            await self._refuse(scope, receive, send, too_large(self.max_body_bytes))
            return
        received = 0
        complete = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, complete, tail
            if complete:  # the body is in: what follows is the wait for a disconnect, which has no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout)
            except TimeoutError:
                complete = True
                raise BodyRefused(408, "Request body timed out",
                                  f"No part of the request body arrived for {self.read_timeout:g} seconds; "
                                  "send the whole body the Content-Length declares.") from None
            if message["type"] != "http.request":
                complete = True
                return message
            body = message.get("body", b"")
            received += len(body)
            complete = not message.get("more_body", False)
            if capped and received > self.max_body_bytes:
                complete = True
                raise too_large(self.max_body_bytes)
            if needle is not None:
                if needle in (tail + body).lower():
                    complete = True
                    raise BodyRefused(400, *NUL_REFUSED)
                tail = (tail + body)[-len(needle):]
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, sending)
        except BodyRefused as exc:  # raised where no exception handler answered it
            if started:
                raise
            await self._refuse(scope, receive, send, exc)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, exc: BodyRefused) -> None:
        response = problem_response(Request(scope), exc.status_code, exc.title, str(exc.detail),
                                    headers={"Connection": "close"})
        await response(scope, receive, send)
