"""A small HTTP client of the case API, used by `locard demo` and `locard analyze`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx


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
        if response.status_code == 401 and "expired" in response.text:
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

    def upload(self, case_id: str, path: Path) -> dict[str, Any]:
        with path.open("rb") as handle:
            files = {"file": (path.name, handle, "application/octet-stream")}
            return dict(self._check(self.http.post(f"/cases/{case_id}/evidence", files=files)))

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
