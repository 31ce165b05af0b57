"""A small HTTP client of the case API, used by `locard demo` and `locard analyze`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

RETRYABLE_STATUS = frozenset({502, 503, 504})


class ApiError(RuntimeError):
    """The API answered with a problem."""


class LocardClient:
    """Calls the case API over HTTP, as any case system would."""

    def __init__(self, base_url: str, *, username: str, password: str, timeout: float = 60.0) -> None:
        self.http = httpx.Client(base_url=f"{base_url}/api/v1", timeout=timeout, event_hooks={
            "response": [self._renew_on_expiry]})
        self._credentials = {"grant_type": "password", "username": username, "password": password}
        self.log_in()

    def log_in(self) -> None:
        """Obtain an access token (OAuth2 password grant) and send it with every later request."""
        response = httpx.post(f"{self.http.base_url}auth/token", data=self._credentials, timeout=self.http.timeout)
        if response.status_code != 200:
            raise ApiError(f"login as {self._credentials['username']!r} refused: {response.text[:300]}")
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def _renew_on_expiry(self, response: httpx.Response) -> None:
        """Access tokens are short-lived: log in again when one has expired (the caller then retries)."""
        if response.status_code == 401:
            response.read()  # hooks see the response before its body is read
            if "expired" in response.text:
                self.log_in()

    def _check(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                problem = response.json()
                message = f"{problem.get('title')}: {problem.get('detail')}"
            except ValueError:
                message = response.text[:300]
            raise ApiError(f"{response.request.method} {response.request.url.path} → {response.status_code} {message}")
        return response.json()

    def ensure_case(self, reference: str, title: str) -> dict[str, Any]:
        for case in self._check(self.http.get("/cases", params={"limit": 1000})):
            if case["reference"] == reference:
                return dict(case)
        return dict(self._check(self.http.post("/cases", json={"reference": reference, "title": title})))

    def upload(self, case_id: str, path: Path, *, retry_seconds: float = 0.0,
               on_retry: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Upload one file; see `upload_data` for the retries."""
        def post() -> httpx.Response:
            with path.open("rb") as handle:
                files = {"file": (path.name, handle, "application/octet-stream")}
                return self.http.post(f"/cases/{case_id}/evidence", files=files)

        return self._with_retries(post, path.name, retry_seconds, on_retry)

    def upload_data(self, case_id: str, name: str, data: bytes, *, retry_seconds: float = 0.0,
                    on_retry: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Upload bytes as one evidence file.

        For up to `retry_seconds`, a connection failure, a timeout or a 502/503/504 (the API or the object
        store restarting) is retried with the same content. That is safe: within a case the same content is
        one evidence item, so a retry of an upload that had in fact been taken answers with that item.
        `on_retry` hears the reason before each retry.
        """
        def post() -> httpx.Response:
            return self.http.post(f"/cases/{case_id}/evidence",
                                  files={"file": (name, data, "application/octet-stream")})

        return self._with_retries(post, name, retry_seconds, on_retry)

    def _with_retries(self, post: Callable[[], httpx.Response], name: str, retry_seconds: float,
                      on_retry: Callable[[str], None] | None) -> dict[str, Any]:
        deadline = time.monotonic() + retry_seconds
        delay = 0.25
        while True:
            try:
                response = post()
                expired = response.status_code == 401 and "expired" in response.text  # renewed by the hook
                if response.status_code not in RETRYABLE_STATUS and not expired:
                    return dict(self._check(response))
                reason = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + delay > deadline:
                raise ApiError(f"upload of {name} failed: {reason}")
            if on_retry is not None:
                on_retry(reason)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def evidence(self, evidence_id: str) -> dict[str, Any]:
        return dict(self._check(self.http.get(f"/evidence/{evidence_id}")))

    def case_evidence(self, case_id: str) -> list[dict[str, Any]]:
        return list(self._check(self.http.get(f"/cases/{case_id}/evidence", params={"limit": 1000})))

    def analysis(self, evidence_id: str) -> dict[str, Any]:
        return dict(self._check(self.http.get(f"/evidence/{evidence_id}/analysis")))

    def findings(self, evidence_id: str) -> list[dict[str, Any]]:
        return list(self._check(self.http.get(f"/evidence/{evidence_id}/findings")))

    def wait_analysed(self, evidence_ids: list[str], timeout: float = 300.0) -> dict[str, dict[str, Any]]:
        """Poll until every item's analysis is done; returns the last status of each."""
        deadline = time.monotonic() + timeout
        status: dict[str, dict[str, Any]] = {}
        pending = list(evidence_ids)
        while pending and time.monotonic() < deadline:
            for evidence_id in list(pending):
                status[evidence_id] = self.analysis(evidence_id)
                if status[evidence_id]["state"] == "done" and status[evidence_id]["jobs"]:
                    pending.remove(evidence_id)
            if pending:
                time.sleep(0.5)
        if pending:
            raise ApiError(f"{len(pending)} item(s) were not analysed within {timeout:.0f}s")
        return status
