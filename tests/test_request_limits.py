"""Request limits before parsing (JSON cap, form fields, stalled bodies), truncated multipart bodies, spool files."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from storage.tables import Evidence, IntakeClaim
from tests.api_helpers import log_in

V1 = "/api/v1"
BOUNDARY = "locard-test-boundary"
JSON_CAP = 4096


@pytest.fixture
def client(settings: Settings, s3_store: S3ObjectStore) -> Iterator[TestClient]:
    tight = settings.model_copy(update={"max_json_bytes": JSON_CAP, "body_read_timeout_seconds": 0.2,
                                        "max_form_fields": 4, "max_form_bytes": 2048})
    with TestClient(create_app(tight, store=s3_store), raise_server_exceptions=False) as test_client:
        yield log_in(test_client)


@pytest.fixture
def case_id(client: TestClient) -> str:
    response = client.post(f"{V1}/cases", json={"reference": "2026-0950", "title": "Limits"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _multipart(*parts: tuple[str, str | None, bytes], close: bool = True) -> bytes:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        body += (b"Content-Type: application/octet-stream\r\n" if filename else b"") + b"\r\n" + data + b"\r\n"
    return body + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def _post_multipart(client: TestClient, case_id: str, body: bytes) -> Any:
    return client.post(f"{V1}/cases/{case_id}/evidence", content=body,
                       headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})


def _nothing_stored(client: TestClient, s3_store: S3ObjectStore) -> None:
    app: Any = client.app
    with app.state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Evidence)) == 0
        assert session.scalar(select(func.count()).select_from(IntakeClaim)) == 0
    assert list(s3_store.list_versions(s3_store.evidence_bucket)) == []
    assert os.listdir(app.state.spool) == []


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


FILE = bytes(range(256)) * 20  # 5,120 bytes


@pytest.mark.parametrize("cut", ["no closing boundary", "inside the file", "inside the part headers"])
def test_a_truncated_multipart_body_is_refused_and_nothing_is_kept(client: TestClient, case_id: str,
                                                                   s3_store: S3ObjectStore, cut: str) -> None:
    whole = _multipart(("file", "scene.bin", FILE))
    body = {"no closing boundary": _multipart(("file", "scene.bin", FILE), close=False),
            "inside the file": whole[: whole.index(FILE) + 2869],
            "inside the part headers": whole[: whole.index(b"filename=") + 5]}[cut]
    assert _problem(_post_multipart(client, case_id, body), 400)["title"] == "Incomplete multipart body"
    _nothing_stored(client, s3_store)
    assert _post_multipart(client, case_id, whole).status_code == 201  # the same upload, whole, is taken in


def test_form_fields_are_limited_in_number_and_size(client: TestClient, case_id: str,
                                                    s3_store: S3ObjectStore) -> None:
    many = _multipart(*[(f"note{i}", None, b"x") for i in range(5)], ("file", "a.bin", FILE))
    assert _problem(_post_multipart(client, case_id, many), 413)["title"] == "Too many form fields"
    large = _multipart(("note1", None, b"x" * 1500), ("note2", None, b"y" * 1500), ("file", "a.bin", FILE))
    assert _problem(_post_multipart(client, case_id, large), 413)["title"] == "Form fields too large"
    _nothing_stored(client, s3_store)


class Feeder:
    """An ASGI `receive` that hands out body chunks, counts what was taken, and then blocks (a stalled client)."""

    def __init__(self, chunks: list[bytes], *, stall: bool) -> None:
        self.chunks = chunks
        self.stall = stall
        self.consumed = 0
        self.stalled = False

    async def __call__(self) -> dict[str, Any]:
        if self.chunks:
            chunk = self.chunks.pop(0)
            self.consumed += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks) or self.stall}
        if self.stall:
            self.stalled = True
            await asyncio.Event().wait()  # the client never sends the rest
        return {"type": "http.disconnect"}


def _call(client: TestClient, method: str, path: str, feeder: Feeder,
          headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Run one request through the ASGI app directly, with `feeder` as the client."""
    sent: list[dict[str, Any]] = []
    raw = [(k.lower().encode(), v.encode()) for k, v in {**client.headers, **headers}.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": raw,
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "state": {}}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(client.app(scope, feeder, send))  # type: ignore[arg-type]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


def test_an_oversized_json_body_is_refused_before_it_is_read(client: TestClient) -> None:
    declared = Feeder([b"{" + b" " * (10 * JSON_CAP)], stall=False)
    status, body = _call(client, "POST", f"{V1}/cases", declared,
                         {"content-type": "application/json", "content-length": str(10 * JSON_CAP + 1)})
    assert status == 413 and body["title"] == "Request body too large"
    assert declared.consumed == 0  # refused on its Content-Length alone
    chunked = Feeder([b"[" + b"0," * 511] + [b"0," * 512] * 200, stall=False)  # ~200 KiB, no Content-Length
    status, body = _call(client, "POST", f"{V1}/cases", chunked, {"content-type": "application/json"})
    assert status == 413 and body["title"] == "Request body too large"
    assert chunked.consumed <= JSON_CAP + 1024 and chunked.chunks  # read up to the cap, the rest never taken
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        assert session.scalar(select(func.count()).select_from(Evidence)) == 0


def test_a_body_shorter_than_its_content_length_times_out(client: TestClient, case_id: str,
                                                          s3_store: S3ObjectStore) -> None:
    short = Feeder([b'{"reference": "2026-0951", '], stall=True)
    status, body = _call(client, "POST", f"{V1}/cases", short,
                         {"content-type": "application/json", "content-length": "200"})
    assert short.stalled and status == 408 and body["title"] == "Request body timed out"
    upload = Feeder([_multipart(("file", "a.bin", FILE))[:3000]], stall=True)
    status, body = _call(client, "POST", f"{V1}/cases/{case_id}/evidence", upload,
                         {"content-type": f"multipart/form-data; boundary={BOUNDARY}", "content-length": "9000"})
    assert upload.stalled and status == 408
    _nothing_stored(client, s3_store)


def test_spool_files_of_a_dead_api_process_are_removed_at_start(settings: Settings,
                                                                s3_store: S3ObjectStore) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)
    dead_folder = settings.home / "spool" / dead.stdout.strip()
    live_folder = settings.home / "spool" / str(os.getppid())  # a process that is still running
    for folder in (dead_folder, live_folder):
        folder.mkdir(parents=True)
        (folder / "locard-upload-left").write_bytes(b"half an upload")
    with TestClient(create_app(settings, store=s3_store)) as test_client:
        own = test_client.app.state.spool  # type: ignore[attr-defined]
        assert own.name == str(os.getpid()) and own.is_dir()
        assert not dead_folder.exists()
        assert (live_folder / "locard-upload-left").exists()
    assert not own.exists()  # removed at shutdown
