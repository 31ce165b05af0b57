"""Edges of access control: the client address behind proxies, what refused requests asked for, and fingerprint
results read across cases (case scope, filtering at read time, the purpose rule on every read)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.clientaddr import forwarded_client, parse_networks
from api.main import create_app
from storage import matching
from storage.db import transaction
from storage.objectstore import S3ObjectStore
from storage.roles import AUDITOR, FORENSIC_EXAMINER, INVESTIGATOR
from storage.settings import Settings
from storage.tables import MatchRequest
from tests.api_helpers import V1, account, log_in, purpose
from tests.fingerprint_samples import extracted_iso
from tests.test_api_fingerprints_search import _record_template
from workers.matcher import FingerprintMatcher

PROXY = "10.0.0.5"
PROXIES = ["10.0.0.0/24", "fd00::/8"]
OUTSIDER = "203.0.113.7"


@pytest.fixture
def proxied(settings: Settings) -> Settings:
    return settings.model_copy(update={"trusted_proxies": PROXIES, "login_max_failures": 2})


def _app_client(settings: Settings, store: S3ObjectStore, peer: str) -> TestClient:
    return TestClient(create_app(settings, store=store), client=(peer, 41000))


def _log(client: TestClient, **query: str) -> list[dict[str, Any]]:
    auditor = account(client, "aud", (AUDITOR,))
    entries = client.get(f"{V1}/audit", params={"limit": "1000", **query}, headers=auditor).json()
    assert isinstance(entries, list), entries
    return entries


def test_forwarded_for_is_read_only_from_trusted_proxies() -> None:
    networks = parse_networks(PROXIES)
    assert forwarded_client(PROXY, ["198.51.100.1"], networks) == "198.51.100.1"
    # The client may write anything left of what the proxies appended: the right-most untrusted hop wins.
    assert forwarded_client(PROXY, ["6.6.6.6", "198.51.100.1", "10.0.0.9"], networks) == "198.51.100.1"
    assert forwarded_client(PROXY, ["[fd00::2]:443", "10.0.0.7:8080"], networks) == "fd00::2"  # all trusted
    assert forwarded_client(PROXY, ["198.51.100.1", "not an address"], networks) == PROXY
    assert forwarded_client(PROXY, [], networks) == PROXY
    with pytest.raises(ValueError, match="not-a-net"):
        parse_networks(["10.0.0.1", "not-a-net"])
    with pytest.raises(ValueError, match="LOCARD_TRUSTED_PROXIES"):
        Settings(_env_file=None, trusted_proxies="10.0.0.1,10.0.0.300")  # type: ignore[call-arg,arg-type]
    assert Settings(_env_file=None, trusted_proxies="10.0.0.1, ::1").trusted_proxies == ["10.0.0.1", "::1"]  # type: ignore[call-arg,arg-type]


def test_the_audit_log_records_the_peer_unless_it_is_a_trusted_proxy(proxied: Settings,
                                                                      s3_store: S3ObjectStore) -> None:
    spoof = {"X-Forwarded-For": "198.51.100.1"}
    with _app_client(proxied, s3_store, OUTSIDER) as direct:
        log_in(direct)
        assert direct.get(f"{V1}/cases", headers=spoof).status_code == 200
        assert direct.get(f"{V1}/cases", headers={"X-Forwarded-For": "6.6.6.6, 10.0.0.8"}).status_code == 200
        with _app_client(proxied, s3_store, PROXY) as via_proxy:
            via_proxy.headers.update(direct.headers)
            assert via_proxy.get(f"{V1}/cases", headers=spoof).status_code == 200
            assert via_proxy.get(f"{V1}/cases", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.2, 10.0.0.8"}) \
                .status_code == 200
            assert via_proxy.get(f"{V1}/cases").status_code == 200
        listings = [e for e in _log(direct, user="supervisor") if e["resource"] == "GET /api/v1/cases"]
    assert [e["detail"]["client"] for e in listings] == [OUTSIDER, OUTSIDER, "198.51.100.1", "198.51.100.2", PROXY]


def test_login_throttling_counts_the_real_client(proxied: Settings, s3_store: S3ObjectStore) -> None:
    def attempt(client: TestClient, user: str, forwarded: str) -> int:
        return client.post(f"{V1}/auth/token", data={"grant_type": "password", "username": user,
                                                     "password": "wrong"},
                           headers={"X-Forwarded-For": forwarded}).status_code

    with _app_client(proxied, s3_store, OUTSIDER) as direct:
        # A client changing its X-Forwarded-For (and the user name) is still one client.
        assert [attempt(direct, f"u{n}", f"198.51.100.{n}") for n in range(3)] == [400, 400, 429]
        with _app_client(proxied, s3_store, PROXY) as via_proxy:
            # Behind the proxy each real client has its own count; one's failures do not lock the others out.
            assert [attempt(via_proxy, f"v{n}", "192.0.2.1") for n in range(3)] == [400, 400, 429]
            assert attempt(via_proxy, "w0", "192.0.2.2") == 400
        logins = [e for e in _log(direct) if e["resource"] == "POST /api/v1/auth/token"]
    assert [e["detail"]["client"] for e in logins] == [OUTSIDER] * 3 + ["192.0.2.1"] * 3 + ["192.0.2.2"]


@pytest.fixture
def world(settings: Settings, s3_store: S3ObjectStore) -> Iterator[dict[str, Any]]:
    """Cases A and B, a probe print in A and impressions of the same finger in A and B; people assigned to A."""
    with TestClient(create_app(settings, store=s3_store)) as client:
        log_in(client)
        cases = {name: client.post(f"{V1}/cases", json={"reference": ref, "title": "t"}).json()["id"]
                 for name, ref in (("a", "2026-0900"), ("b", "2026-0901"))}
        prints = {}
        for name, case, iso in (("probe", "a", extracted_iso(11, 1)), ("mate", "b", extracted_iso(11, 0)),
                                ("twin", "a", extracted_iso(11, 2))):
            upload = client.post(f"{V1}/cases/{cases[case]}/evidence", data={"evidence_kind": "fingerprint"},
                                 files={"file": (f"{name}-print.png", iso + name.encode(), "image/png")})
            assert upload.status_code == 201, upload.text
            prints[name] = upload.json()["evidence"]["id"]
            _record_template(settings, prints[name], iso)
        yield {"client": client, "settings": settings, "cases": cases, "prints": prints,
               "ann": account(client, "ann", (INVESTIGATOR,), cases=[cases["a"]]),
               "eva": account(client, "eva", (FORENSIC_EXAMINER,), cases=[cases["a"]])}


def _finding_of(client: TestClient, evidence_id: str) -> str:
    findings = client.get(f"{V1}/evidence/{evidence_id}/findings").json()
    return str(next(f["id"] for f in findings if f["kind"] == "fingerprint.template"))


def test_refused_requests_are_logged_with_what_they_asked_for(world: dict[str, Any]) -> None:
    client: TestClient = world["client"]
    case_b, mate = world["cases"]["b"], world["prints"]["mate"]
    finding = _finding_of(client, mate)
    ann, anonymous = world["ann"], TestClient(client.app)
    asked = {f"/cases/{case_b}": "GET /api/v1/cases/{case_id}",
             f"/evidence/{mate}": "GET /api/v1/evidence/{evidence_id}",
             f"/evidence/{mate}/findings": "GET /api/v1/evidence/{evidence_id}/findings",
             f"/findings/{finding}/artifacts/0": "GET /api/v1/findings/{finding_id}/artifacts/{index}"}
    for path in asked:
        assert anonymous.get(f"{V1}{path}", headers=ann).status_code == 404, path
        assert anonymous.get(f"{V1}{path}").status_code == 401, path  # refused before routing
    search = anonymous.post(f"{V1}/fingerprints/searches", headers={**ann, **purpose("2026-0900")},
                            json={"probe_evidence_id": world["prints"]["probe"], "case_ids": [case_b]})
    assert search.status_code == 404 and search.json()["title"] == "Case not found"
    entries = [e for e in _log(client) if e["outcome"] == "denied"]
    expected_resource = {template: resource for template, resource in zip(
        asked.values(), [case_b, mate, mate, finding], strict=True)}
    for actor in ("ann", "anonymous"):
        refused = {e["resource"]: e for e in entries if e["actor"] == actor}
        for resource, resource_id in expected_resource.items():
            entry = refused[resource]
            assert (entry["resource_id"], entry["case_id"]) == (resource_id, case_b), (actor, entry)
            assert resource_id in entry["detail"]["requested"].values()
    [searched] = [e for e in entries if e["resource"] == "POST /api/v1/fingerprints/searches"]
    assert searched["detail"]["requested"]["case_ids"] == [case_b] and searched["detail"]["status"] == 404
    by_case = {e["resource"] for e in _log(client, case_id=case_b) if e["outcome"] == "denied"}
    assert set(expected_resource) <= by_case  # an auditor finds every attempt on case B under its id
    # Ids too long to be Locard's are still logged (cut to the log's columns), on every record store.
    long_case, long_evidence = "c" * 60, "e" * 300
    assert anonymous.get(f"{V1}/cases/{long_case}", headers=ann).status_code == 404
    assert anonymous.get(f"{V1}/evidence/{long_evidence}", headers=ann).status_code == 422
    assert anonymous.get(f"{V1}/nowhere/{long_evidence}").status_code == 401
    logged = {e["resource"]: e for e in _log(client)[-4:]}
    assert logged["GET /api/v1/cases/{case_id}"]["resource_id"] == long_case
    assert logged["GET /api/v1/cases/{case_id}"]["case_id"] is None
    assert logged["GET /api/v1/evidence/{evidence_id}"]["resource_id"] == long_evidence[:200]
    assert f"GET {V1}/nowhere/{long_evidence}"[:200] in logged


def _run(settings: Settings, request_id: str) -> None:
    """Answer one match request as the dispatcher does: the matcher runs it and its result is recorded."""
    matcher = FingerprintMatcher(settings)
    answer = matcher.run(request_id)
    assert answer.error is None and answer.result is not None, answer
    with transaction(matcher.factory) as session:
        matching.finish_request(session, request_id=request_id, result=answer.result, error=None)


def test_search_results_show_only_what_their_reader_may_see(world: dict[str, Any]) -> None:
    client: TestClient = world["client"]
    settings: Settings = world["settings"]
    prints, cases = world["prints"], world["cases"]
    why = purpose("2026-0900")
    reader = TestClient(client.app)
    ann = {**world["ann"], **why}
    # A supervisor's search covers every case and finds the mate in case B.
    everywhere = client.post(f"{V1}/fingerprints/searches", json={"probe_evidence_id": prints["probe"]},
                             headers=purpose("2026-0901"))
    assert everywhere.status_code == 202, everywhere.text
    _run(settings, everywhere.json()["id"])
    url = f"{V1}/fingerprints/requests/{everywhere.json()['id']}"
    full = client.get(url, headers=purpose("2026-0901")).json()["result"]["candidates"]
    assert {prints["mate"], prints["twin"]} <= {c["evidence_id"] for c in full}
    in_a = [c["evidence_id"] for c in full if c["case_id"] == cases["a"]]
    # Ann (case A) sees the probe, so she may read it, with a purpose; case B's candidate is not in her answer.
    assert reader.get(url, headers=world["ann"]).status_code == 403
    assert reader.get(url, headers=world["eva"]).status_code == 403
    assert reader.get(url, headers={**world["ann"], **purpose("2026-0901")}).status_code == 403  # not her case
    seen = reader.get(url, headers=ann)
    assert seen.status_code == 200, seen.text
    shown = seen.json()["result"]["candidates"]
    assert [c["evidence_id"] for c in shown] == in_a and [c["rank"] for c in shown] == list(range(1, len(in_a) + 1))
    assert prints["mate"] not in seen.text and "mate-print.png" not in seen.text and cases["b"] not in seen.text
    # Her own search without case_ids covers her cases only.
    own = reader.post(f"{V1}/fingerprints/searches", json={"probe_evidence_id": prints["probe"]}, headers=ann)
    assert own.status_code == 202 and own.json()["parameters"]["case_ids"] == [cases["a"]]
    _run(settings, own.json()["id"])
    mine = reader.get(f"{V1}/fingerprints/requests/{own.json()['id']}", headers=ann).json()["result"]
    assert prints["twin"] in {c["evidence_id"] for c in mine["candidates"]}
    assert {c["case_id"] for c in mine["candidates"]} == {cases["a"]}
    # Nothing was created by the refused search; every read is logged with its purpose and the cases shown.
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        assert session.scalar(select(func.count()).select_from(MatchRequest)) == 2
    reads = [e for e in _log(client, user="ann") if e["resource"] == "GET /api/v1/fingerprints/requests/{request_id}"]
    assert [(e["outcome"], e["purpose_case"]) for e in reads] == [
        ("denied", None), ("denied", None), ("ok", "2026-0900"), ("ok", "2026-0900")]
    assert reads[2]["detail"]["cases_shown"] == [cases["a"]] and reads[2]["resource_id"] == everywhere.json()["id"]
    assert reads[2]["justification"] == why["X-Locard-Purpose-Justification"]


def test_without_trusted_proxies_the_header_is_never_read(settings: Settings, s3_store: S3ObjectStore) -> None:
    assert settings.trusted_proxies == []  # the default: even a local peer's header is ignored
    with _app_client(settings, s3_store, "127.0.0.1") as client:
        log_in(client)
        assert client.get(f"{V1}/cases", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
        [entry] = [e for e in _log(client, user="supervisor") if e["resource"] == "GET /api/v1/cases"]
    assert entry["detail"]["client"] == "127.0.0.1"
