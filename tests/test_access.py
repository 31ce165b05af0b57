"""Access control on every route, stated purposes, the audit trail, and fuzzing of the whole API.

Walks every route of the app (its routes, not only its OpenAPI document): without credentials each refuses (but
health and the token endpoints); an investigator of another case gets from every case-scoped one the 404 a
missing id gets, for a real case, item, finding, fingerprint request and match. A route with a path parameter or
a body field the walk does not know fails it until classified. Then purposes, minimised responses, the audit
log's queries and its verification after direct tampering, and schemathesis. Roles route by route, the
registers' audit per person and hostile bodies are in `tests.test_access_registers`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.main import create_app
from storage import matches, matching, searches
from storage.db import transaction
from storage.objectstore import S3ObjectStore
from storage.roles import AUDITOR, CASE_SYSTEM, FORENSIC_EXAMINER, INVESTIGATOR
from storage.settings import Settings
from storage.tables import Evidence, MatchRequest
from tests import match_samples
from tests.api_helpers import V1, account, log_in, purpose
from tests.fingerprint_samples import extracted_iso
from tests.media_samples import bus_jpg_path

PUBLIC = {("GET", f"{V1}/health"), ("POST", f"{V1}/auth/token"), ("POST", f"{V1}/auth/revoke")}
# Every path parameter the API uses, by what it names: those naming a case or what belongs to one are case-scoped
# (another case's is 404, the same as a missing one). A route with a parameter not listed here fails the walk
# below until it is listed (and its case scope checked).
CASE_PARAMETERS = ("case_id", "evidence_id", "finding_id", "request_id", "match_id", "lead_id")
OTHER_PARAMETERS = ("username", "key_id", "index", "person_id", "vehicle_id", "watchlist_id", "record_id",
                    "register", "subscription_id", "delivery_id")
CASE_SCOPED = re.compile(r"\{(" + "|".join(CASE_PARAMETERS) + r")\}")
# Fields of a request body naming a case or what belongs to one: a route whose body has one needs a body here
# (naming case A's records), so that the walk checks its case scope.
CASE_FIELDS = re.compile(r"(^|_)(case|evidence|finding|request|match)_ids?$")
BODIES: dict[str, Any] = {
    f"{V1}/cases": {"reference": "2026-9999", "title": "x"},
    f"{V1}/cases/{{case_id}}/evidence/presigned-upload": {"filename": "a.jpg"},
    f"{V1}/fingerprints/verifications": {"probe_evidence_id": "{evidence_id}", "candidate_evidence_id": "x"},
    f"{V1}/fingerprints/searches": {"probe_evidence_id": "{evidence_id}"},
    f"{V1}/search/faces": {"evidence_id": "{evidence_id}"},
    f"{V1}/search/images": {"evidence_id": "{evidence_id}"},
    f"{V1}/subscriptions": {"url": "https://hooks.example.org/locard", "case_id": "{case_id}"},
}
SEARCH_REQUESTS = f"{V1}/search/requests/"  # their {request_id} is a face or image search's, not a fingerprint's


@pytest.fixture
def world(settings: Settings, s3_store: S3ObjectStore) -> Iterator[dict[str, Any]]:
    """A supervisor's client, case A with one evidence item, case B, and users of each role."""
    with TestClient(create_app(settings, store=s3_store)) as client:
        log_in(client)
        case_a = client.post(f"{V1}/cases", json={"reference": "2026-0800", "title": "Robbery, Liège"}).json()
        case_b = client.post(f"{V1}/cases", json={"reference": "2026-0801", "title": "Fraud, Gent"}).json()
        upload = client.post(f"{V1}/cases/{case_a['id']}/evidence",
                             files={"file": ("bus.jpg", bus_jpg_path().read_bytes(), "image/jpeg")})
        assert upload.status_code == 201, upload.text
        yield {"client": client, "a": case_a, "b": case_b, "evidence": upload.json()["evidence"]["id"],
               "outsider": account(client, "ivo", (INVESTIGATOR,), cases=[case_b["id"]]),
               "insider": account(client, "ann", (INVESTIGATOR,), cases=[case_a["id"]]),
               "examiner": account(client, "eva", (FORENSIC_EXAMINER,), cases=[case_a["id"]]),
               "system": account(client, "rms", (CASE_SYSTEM,), cases=[case_a["id"]]),
               "auditor": account(client, "aud", (AUDITOR,))}


def operations(app: Any) -> list[tuple[str, str]]:
    """Every (method, path template) the app serves, from its routes (those left out of the OpenAPI document
    included); a route that takes no method (a mount) fails here, as one the walks cannot call."""
    found = set()
    for route in iter_route_contexts(app.routes):
        assert route.methods, f"{route.path}: a route without methods, which the access walks cannot call"
        found |= {(method, str(route.path)) for method in route.methods}
    return sorted(found)


def _body_fields(document: dict[str, Any], method: str, template: str) -> set[str]:
    """The top-level fields of the JSON body of an operation, from the OpenAPI document."""
    operation = document["paths"].get(template, {}).get(method.lower(), {})
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return set(schema.get("properties", {}))


def _call(client: TestClient, method: str, template: str, values: dict[str, str],
          headers: dict[str, str]) -> httpx.Response:
    path = _call_path(template, values)
    body = BODIES.get(template)
    if body is not None:
        body = {k: (v.format(**values) if isinstance(v, str) else v) for k, v in body.items()}
    return client.request(method, path, json=body, headers={**headers, **purpose("2026-0801")})


def _call_path(template: str, values: dict[str, str]) -> str:
    """The path with its parameters from `values` (a search request's id for the searches), else random ids."""

    def value(found: re.Match[str]) -> str:
        name = found.group(1)
        if name == "request_id" and template.startswith(SEARCH_REQUESTS):
            name = "search_request_id"
        return values.get(name, str(uuid.uuid4()))

    return re.sub(r"\{(\w+)\}", value, template)


def _case_a_records(client: TestClient, evidence_id: str) -> dict[str, str]:
    """A finding of case A's item (a fingerprint template), a fingerprint and a face search request on it, and a
    match between it and a second item of case A: the ids of what belongs to case A, besides the case and item."""
    with transaction(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
        evidence = session.get(Evidence, evidence_id)
        assert evidence is not None
        other = match_samples.item(session, "2026-0800")
        found = {}
        for item in (evidence, other):
            [found[item.id]] = match_samples.record(session, item, "fingerprints", "1.0.0", [
                ("fingerprint.template", "NFIQ 2 50", {"declared": True, "nfiq2": 50})])
            matching.add_template(session, evidence_id=item.id, case_id=item.case_id, finding_id=found[item.id],
                                  iso=extracted_iso(21, 0), minutiae=40, nfiq2=50)
        session.flush()
        request = matching.request_match(session, kind=matching.SEARCH, probe=evidence, candidate=None,
                                         parameters={}, requested_by="supervisor")
        face_search = MatchRequest(kind=searches.FACE_SEARCH, probe_evidence_id=evidence.id, parameters={},
                                   requested_by="supervisor")
        session.add(face_search)
        session.flush()
        match, _ = matches.add_match(session, match=matches.NewMatch(
            modality="fingerprint", finding_id=found[evidence.id], finding_kind="fingerprint.template",
            evidence_id=evidence.id, case_id=evidence.case_id, analyzer="fingerprints", analyzer_version="1.0.0",
            target_kind="finding", target_id=found[other.id], target_analyzer="fingerprints",
            target_version="1.0.0", target_evidence_id=other.id, target_case_id=other.case_id, score=250.0,
            threshold=40.0, method="similarity", matcher="fingerprints", matcher_version="1"))
        return {"finding_id": found[evidence.id], "request_id": request.id, "search_request_id": face_search.id,
                "match_id": match.id}


def test_every_route_refuses_without_credentials_and_hides_other_cases(world: dict[str, Any]) -> None:
    client: TestClient = world["client"]
    operations_ = operations(client.app)
    assert len(operations_) >= 60
    document = client.get(f"{V1}/openapi.json").json()
    assert {(m.upper(), p) for p, item in document["paths"].items() for m in item} <= set(operations_)
    values = {"case_id": world["a"]["id"], "evidence_id": world["evidence"], "username": "ivo", "index": "0",
              **_case_a_records(client, world["evidence"])}
    anonymous = TestClient(client.app)
    for method, template in operations_:
        unknown = set(re.findall(r"\{(\w+)\}", template)) - {*CASE_PARAMETERS, *OTHER_PARAMETERS}
        assert not unknown, f"{method} {template}: classify the path parameters {unknown} in this test"
        fields = {f for f in _body_fields(document, method, template) if CASE_FIELDS.search(f)}
        assert not fields or template in BODIES, f"{method} {template}: its body names {fields}; add a body"
        status = _call(anonymous, method, template, values, {}).status_code
        if (method, template) in PUBLIC:
            assert status in (200, 400), (method, template, status)  # health; token endpoints: a bad request
        else:
            assert status == 401, (method, template, status)
    bogus = {"Authorization": "Bearer not-a-token"}
    assert _call(anonymous, "GET", f"{V1}/cases", values, bogus).status_code == 401
    scoped = [(method, template) for method, template in operations_
              if (CASE_SCOPED.search(template) and not template.startswith(f"{V1}/admin/"))
              or "{evidence_id}" in str(BODIES.get(template, ""))]  # routes naming an item in their body
    assert len(scoped) >= 24
    missing = {name: str(uuid.uuid4()) for name in CASE_PARAMETERS}
    for method, template in scoped:
        hidden = _call(anonymous, method, template, values, world["outsider"])
        absent = _call(anonymous, method, template, {**values, **missing}, world["outsider"])
        assert hidden.status_code == absent.status_code == 404, (method, template)
        assert hidden.json()["title"] == absent.json()["title"], (method, template)  # indistinguishable
    # What belongs to case A exists: someone assigned to it reads it.
    insider = {**world["insider"], **purpose("2026-0800")}
    for template in (f"{V1}/cases/{{case_id}}", f"{V1}/evidence/{{evidence_id}}", f"{V1}/matches/{{match_id}}",
                     f"{V1}/fingerprints/requests/{{request_id}}", f"{SEARCH_REQUESTS}{{request_id}}"):
        path = _call_path(template, values)
        assert anonymous.get(path, headers=insider).status_code == 200, template
    listed = anonymous.get(f"{V1}/cases", headers=world["outsider"]).json()
    assert [case["reference"] for case in listed] == ["2026-0801"]
    for role in ("auditor",):  # an auditor sees the log, never case data
        assert anonymous.get(f"{V1}/cases/{world['a']['id']}", headers=world[role]).status_code == 404
        assert anonymous.get(f"{V1}/cases", headers=world[role]).status_code == 403


def test_searches_across_cases_need_a_purpose_that_is_logged(world: dict[str, Any]) -> None:
    client = TestClient(world["client"].app)
    ann = world["insider"]
    refused = client.get(f"{V1}/search", params={"q": "bus"}, headers=ann)
    assert refused.status_code == 403 and "purpose" in refused.json()["title"].lower()
    not_hers = client.get(f"{V1}/search", params={"q": "bus"}, headers={**ann, **purpose("2026-0801")})
    assert not_hers.status_code == 403  # a purpose must name a case she works on
    short = client.get(f"{V1}/search", params={"q": "bus"}, headers={**ann, **purpose("2026-0800", "because")})
    assert short.status_code == 403
    why = "identify the van seen at the robbery"
    assert client.get(f"{V1}/search", params={"q": "bus"}, headers={**ann, **purpose("2026-0800", why)}).status_code \
        == 200
    log = client.get(f"{V1}/audit", params={"user": "ann"}, headers=world["auditor"]).json()
    searches = [entry for entry in log if entry["resource"] == "GET /api/v1/search"]
    assert [(e["outcome"], e["purpose_case"], e["justification"]) for e in searches] == [
        ("denied", None, None), ("denied", None, None), ("denied", None, None), ("ok", "2026-0800", why)]
    assert searches[-1]["recipients"] == ["ann"] and searches[-1]["action"] == "consultation"
    assert client.get(f"{V1}/audit", headers=ann).status_code == 403  # only auditors read the log
    supervisor = world["client"]
    assigned = supervisor.put(f"{V1}/admin/cases/{world['a']['id']}/assignments/ivo")
    assert assigned.status_code == 200, assigned.text
    changes = client.get(f"{V1}/audit", params={"user": "supervisor", "action": "alteration"},
                         headers=world["auditor"]).json()
    assert [e["resource"] for e in changes] == ["PUT /api/v1/admin/cases/{case_id}/assignments/{username}"]
    reads = client.get(f"{V1}/audit", params={"case_id": world["a"]["id"]}, headers=world["auditor"]).json()
    assert {"collection", "consultation"} <= {entry["action"] for entry in reads}
    assert any(e["resource"] == "POST /api/v1/cases/{case_id}/evidence" for e in reads)


def test_responses_hold_the_data_the_role_needs(world: dict[str, Any], settings: Settings) -> None:
    client = TestClient(world["client"].app)
    from storage import analysis, jobs
    from storage.db import transaction
    from storage.messages import ReportedFinding, RunOutcome

    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    with transaction(factory) as session:
        jobs.enqueue(session, kind="analysis", dedupe_key="analysis:t:faces", evidence_id=world["evidence"],
                     analyzer="faces")
    [job] = [j for j in jobs.claim(factory, kinds=["analysis"], owner="t", lease_seconds=30, limit=10)
             if j.analyzer == "faces"]
    face = ReportedFinding(kind="faces.face", data={"embedding": {"model": "dlib", "vector": [0.1] * 128},
                                                    "quality": 0.9})
    number = ReportedFinding(kind="entity.national_number", label="85073003328", data={"value": "85073003328"})
    with transaction(factory) as session:
        analysis.record_outcome(session, job_id=job.id, owner="t", attempt=1, outcome=RunOutcome(
            analyzer="faces", analyzer_version="1", status="succeeded", findings=[face, number]))
    url = f"{V1}/evidence/{world['evidence']}/findings"
    examiner = {f["kind"]: f["data"] for f in client.get(url, headers=world["examiner"]).json()}
    system = {f["kind"]: f["data"] for f in client.get(url, headers=world["system"]).json()}
    assert len(examiner["faces.face"]["embedding"]["vector"]) == 128
    assert system["faces.face"]["embedding"] == "withheld" and system["faces.face"]["quality"] == 0.9
    persons = client.get(f"{V1}/audit", params={"person": "85073003328"}, headers=world["auditor"]).json()
    assert {entry["actor"] for entry in persons} == {"eva", "rms"}  # each consultation of that person, by whom


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_audit_chains_verify_and_name_a_tampered_entry(world: dict[str, Any]) -> None:
    client = TestClient(world["client"].app)
    auditor = world["auditor"]
    for _ in range(3):
        client.get(f"{V1}/cases", headers=world["insider"])
    results = {r["chain"]: r for r in client.get(f"{V1}/audit/verify", headers=auditor).json()}
    assert results["audit"]["ok"] and results["custody"]["ok"] and results["audit"]["checked"] >= 5
    entries = client.get(f"{V1}/audit", params={"user": "ann"}, headers=auditor).json()
    target = entries[1]["id"]
    engine = client.app.state.session_factory.kw["bind"]  # type: ignore[attr-defined]
    with engine.begin() as connection:  # a DBA edits the log behind Locard's back
        connection.execute(text("DROP TRIGGER audit_log_no_update"))
        connection.execute(text("UPDATE audit_log SET actor = 'someone-else' WHERE id = :id"), {"id": target})
    results = {r["chain"]: r for r in client.get(f"{V1}/audit/verify", headers=auditor).json()}
    assert not results["audit"]["ok"] and results["audit"]["first_bad_id"] == target
    assert str(target) in results["audit"]["reason"] and results["custody"]["ok"]
    assert client.get(f"{V1}/audit/verify", headers=world["insider"]).status_code == 403


def test_fuzzing_the_api_from_its_schema_finds_no_server_error(world: dict[str, Any]) -> None:
    """Property-based fuzzing of every operation (schemathesis), bounded, as a supervisor with a purpose."""
    import hypothesis
    import schemathesis

    client: TestClient = world["client"]
    headers = {**dict(client.headers), **purpose("2026-0800")}
    schema = schemathesis.openapi.from_dict(client.get(f"{V1}/openapi.json").json())
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.settings(max_examples=6, deadline=None, database=None, derandomize=True,
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            kwargs = case.as_transport_kwargs(base_url="")
            body = kwargs.get("data")
            response = client.request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                                      headers={**(kwargs.get("headers") or {}), **headers},
                                      content=body if isinstance(body, str | bytes) else None,
                                      data=body if isinstance(body, dict) else None, json=kwargs.get("json"),
                                      files=kwargs.get("files"))
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        fuzz()
    assert not failures, "\n".join(failures[:10])
