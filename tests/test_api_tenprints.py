"""The fingerprint gallery's API on both record stores: enrolling analysed prints as fingers of registered persons
(201, then 200), the refusals as problem details with their reason (409 contradiction or no template, 422 a print
under its NFIQ 2 floor or undeclared), listing with a purpose (audited per person, a print of an unassigned case
withheld), withdrawal, the gallery's size, roles and case scope, hostile bodies.

Prints are real MINDTCT templates of synthetic fingers and of the one real latent, recorded as the fingerprints
analyzer records them (`tests.test_tenprints.print_item`, templates cached on disk).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from api.schemas.tenprints import Impression
from storage import audit
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.roles import AUDITOR, CASE_SYSTEM, FORENSIC_EXAMINER, INVESTIGATOR, SUPERVISOR
from storage.settings import Settings
from storage.tables import FingerprintTemplate
from storage.tenprints import IMPRESSIONS, NFIQ2_FLOORS
from tests import match_samples as samples
from tests.api_helpers import V1, account, purpose
from tests.conftest import TEST_AUDIT_KEY, TEST_TOKEN_SECRET
from tests.fingerprint_samples import extracted_iso
from tests.register_samples import person
from tests.test_tenprints import NFIQ2_BYTE, print_item, real_latent_iso, registered

BUREAU, INQUIRY = "2026-0900", "2026-0901"  # the fingerprint bureau's case (the prints), an investigation
JSON_CAP = 4096


@dataclass(frozen=True)
class Gallery:
    """Two registered persons; prints in the bureau's case: three synthetic fingers, the real latent, an
    undeclared print and an item never analysed as a fingerprint."""

    person: str
    other: str
    number: str  # the person's national number
    prints: dict[str, str]  # name -> evidence id
    bureau: str  # case ids
    inquiry: str


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, environment="test", home=tmp_path / "home",  # type: ignore[call-arg]
                        database_url=database_url, token_secret=TEST_TOKEN_SECRET, audit_key=TEST_AUDIT_KEY,
                        max_json_bytes=JSON_CAP)
    with TestClient(create_app(settings, store=MemoryObjectStore()), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def gallery(client: TestClient) -> Gallery:
    with transaction(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
        first, other = registered(session, 71), registered(session, 72)
        prints = {f"f{finger}": print_item(session, BUREAU, extracted_iso(finger, 0)).id for finger in (21, 22, 23)}
        prints["latent"] = print_item(session, BUREAU, real_latent_iso()).id
        prints["undeclared"] = print_item(session, BUREAU, extracted_iso(24, 0), declared=False).id
        photo = samples.item(session, BUREAU)
        prints["photo"] = photo.id
        inquiry = samples.item(session, INQUIRY)
        return Gallery(first, other, person(71)["national_number"], prints, photo.case_id, inquiry.case_id)


@pytest.fixture
def sup(client: TestClient, gallery: Gallery) -> dict[str, str]:
    return {**account(client, "sup", (SUPERVISOR,)), **purpose(INQUIRY)}


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


def _audit(client: TestClient, **filters: Any) -> list[audit.AuditEntry]:
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        return list(audit.query(session, limit=10_000, **filters))


def _url(person_id: str, evidence_id: str) -> str:
    return f"{V1}/persons/{person_id}/tenprints/{evidence_id}"


def test_a_print_is_enrolled_listed_and_withdrawn(client: TestClient, gallery: Gallery, sup: dict[str, str]) -> None:
    url = _url(gallery.person, gallery.prints["f21"])
    created = _ok(client.put(url, headers=sup, json={"finger": 2, "impression": "rolled"}), 201)
    again = _ok(client.put(url, headers=sup, json={"finger": 2, "impression": "rolled"}))
    assert again == created
    assert (created["finger"], created["finger_name"], created["impression"]) == (2, "right index", "rolled")
    assert created["nfiq2"] == extracted_iso(21, 0)[NFIQ2_BYTE] and created["minutiae"] > 0
    assert (created["evidence_id"], created["case_id"]) == (gallery.prints["f21"], gallery.bureau)
    assert created["enrolled_by"] == "sup" and not created["evidence_withheld"]
    thumb = _ok(client.put(_url(gallery.person, gallery.prints["f22"]), headers=sup,
                           json={"finger": 6, "impression": "plain"}), 201)
    listing = f"{V1}/persons/{gallery.person}/tenprints"
    listed = _ok(client.get(listing, headers=sup))
    assert [(r["id"], r["finger_name"]) for r in listed] == [(created["id"], "right index"),
                                                            (thumb["id"], "left thumb")]
    size = _ok(client.get(f"{V1}/galleries/fingerprints", headers=sup))
    assert size == {"templates": 5, "newest_template_id": size["newest_template_id"], "records": 2, "persons": 1}
    assert size["newest_template_id"] == _newest(client) > 0
    assert client.delete(f"{listing}/{thumb['id']}", headers=sup).status_code == 204
    _problem(client.delete(f"{listing}/{thumb['id']}", headers=sup), 404)
    _problem(client.delete(f"{V1}/persons/{gallery.other}/tenprints/{created['id']}", headers=sup), 404)  # not hers
    assert [r["id"] for r in _ok(client.get(listing, headers=sup))] == [created["id"]]
    # Every request named the person once; the consultations with their purpose, the withdrawal with its record.
    entries = _audit(client, person=gallery.number)
    assert [(e.action, e.outcome) for e in entries] == [
        ("alteration", "ok"), ("alteration", "ok"), ("alteration", "ok"), ("consultation", "ok"),
        ("erasure", "ok"), ("erasure", "denied"), ("consultation", "ok")]
    consulted = [e for e in entries if e.action == "consultation"]
    assert all((e.purpose_case, e.resource_id) == (INQUIRY, gallery.person) for e in consulted)
    withdrawn = entries[4]
    assert withdrawn.detail["tenprint"] == {"record_id": thumb["id"], "evidence_id": gallery.prints["f22"],
                                            "finger": 6, "impression": "plain"}
    assert entries[0].case_id == gallery.bureau  # the print's case, for its custody


def _newest(client: TestClient) -> int:
    """The id of the newest template held."""
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.max(FingerprintTemplate.id))) or 0)


def test_refusals_say_why_as_problems(client: TestClient, gallery: Gallery, sup: dict[str, str]) -> None:
    rolled = {"finger": 2, "impression": "rolled"}
    _ok(client.put(_url(gallery.person, gallery.prints["f21"]), headers=sup, json=rolled), 201)
    contradictions = {
        "already enrolled as the right index": (gallery.other, "f21", rolled),  # a print is one finger
        "is already enrolled from evidence": (gallery.person, "f22", rolled),  # the finger has its print
        "a print is one finger of one person": (gallery.person, "f21", {"finger": 3, "impression": "rolled"}),
    }
    for reason, (person_id, name, body) in contradictions.items():
        refused = _problem(client.put(_url(person_id, gallery.prints[name]), headers=sup, json=body), 409)
        assert refused["title"] == "Enrolment contradicts a record" and reason in refused["detail"]
    no_template = _problem(client.put(_url(gallery.person, gallery.prints["photo"]), headers=sup,
                                      json={"finger": 4, "impression": "plain"}), 409)
    assert no_template["title"] == "No fingerprint template" and "no fingerprint analysis" in no_template["detail"]
    quality = real_latent_iso()[NFIQ2_BYTE]
    poor = _problem(client.put(_url(gallery.person, gallery.prints["latent"]), headers=sup,
                               json={"finger": 7, "impression": "rolled"}), 422)
    assert f"NFIQ 2 {quality}, under the floor of {NFIQ2_FLOORS['rolled']}" in poor["detail"]
    assert "recapture" in poor["detail"] and poor["title"] == "Print refused"
    latent = _ok(client.put(_url(gallery.person, gallery.prints["latent"]), headers=sup,
                            json={"finger": 7, "impression": "latent"}), 201)
    assert latent["nfiq2"] == quality
    undeclared = _problem(client.put(_url(gallery.person, gallery.prints["undeclared"]), headers=sup,
                                     json={"finger": 8, "impression": "plain"}), 422)
    assert "not declared a fingerprint" in undeclared["detail"]
    url = _url(gallery.person, gallery.prints["f23"])
    bodies: tuple[Any, ...] = ({"finger": 0, "impression": "plain"}, {"finger": 11, "impression": "plain"},
                               {"finger": 3, "impression": "flat"}, {"finger": "three", "impression": "plain"},
                               {"finger": 3}, {"finger": 3, "impression": "plain", "hand": "right"}, [], None)
    for body in bodies:
        _problem(client.put(url, headers=sup, json=body), 422)
    _problem(client.put(url, headers={**sup, "content-type": "application/json"}, content=b"{not json"), 422)
    _problem(client.put(url, headers=sup, json={"finger": 3, "impression": "plain", "x": "y" * JSON_CAP}), 413)
    listed = _ok(client.get(f"{V1}/persons/{gallery.person}/tenprints", headers=sup))
    assert sorted(r["finger"] for r in listed) == [2, 7]  # nothing refused was enrolled


def test_roles_case_scope_and_the_purpose(client: TestClient, gallery: Gallery, sup: dict[str, str]) -> None:
    url = _url(gallery.person, gallery.prints["f21"])
    body = {"finger": 2, "impression": "rolled"}
    assert client.put(url, json=body).status_code == 401
    # A case system enrols prints of the cases it feeds; another case's print does not exist for it.
    rms = account(client, "rms", (CASE_SYSTEM,), cases=[gallery.bureau])
    stranger = account(client, "rms-other", (CASE_SYSTEM,), cases=[gallery.inquiry])
    hidden = _problem(client.put(url, headers=stranger, json=body), 404)
    missing = _problem(client.put(_url(gallery.person, str(uuid.uuid4())), headers=stranger, json=body), 404)
    assert hidden["title"] == missing["title"] == "Evidence not found"
    _problem(client.put(_url(str(uuid.uuid4()), gallery.prints["f21"]), headers=rms, json=body), 404)
    record = _ok(client.put(url, headers=rms, json=body), 201)
    assert record["enrolled_by"] == "rms"
    # Readers consult with a purpose; an investigator of another case sees the record, not which print it is.
    listing = f"{V1}/persons/{gallery.person}/tenprints"
    ivy = account(client, "ivy", (INVESTIGATOR,), cases=[gallery.inquiry])
    eva = account(client, "eva", (FORENSIC_EXAMINER,), cases=[gallery.bureau])
    _problem(client.get(listing, headers=ivy), 403)
    _problem(client.get(listing, headers={**ivy, **purpose(BUREAU)}), 403)  # not a case she works on
    [seen] = _ok(client.get(listing, headers={**ivy, **purpose(INQUIRY)}))
    assert (seen["evidence_id"], seen["case_id"], seen["evidence_withheld"]) == (None, None, True)
    assert (seen["finger"], seen["nfiq2"]) == (2, record["nfiq2"])
    [shown] = _ok(client.get(listing, headers={**eva, **purpose(BUREAU)}))
    assert shown == record
    assert _ok(client.get(f"{V1}/galleries/fingerprints", headers=ivy))["records"] == 1
    # Investigators and examiners do not write the register; case systems, auditors and administrators do not
    # consult it; an auditor sees no case, so the print does not exist for her.
    _problem(client.put(url, headers=eva, json=body), 403)
    _problem(client.delete(f"{listing}/{record['id']}", headers=ivy), 403)
    _problem(client.get(listing, headers={**rms, **purpose(BUREAU)}), 403)
    aud = account(client, "aud", (AUDITOR,))
    for refused in (client.get(listing, headers=aud), client.get(f"{V1}/galleries/fingerprints", headers=aud),
                    client.get(f"{V1}/galleries/fingerprints", headers=rms),
                    client.delete(f"{listing}/{record['id']}", headers=aud)):
        _problem(refused, 403)
    _problem(client.put(url, headers=aud, json=body), 404)
    consulted = [e for e in _audit(client, person=gallery.number, action="consultation") if e.outcome == "ok"]
    assert [(e.actor, e.purpose_case) for e in consulted] == [("ivy", INQUIRY), ("eva", BUREAU)]
    assert client.delete(f"{listing}/{record['id']}", headers=rms).status_code == 204
    _problem(client.get(f"{V1}/persons/{'x' * 65}/tenprints", headers=sup), 422)


def test_the_api_speaks_the_gallery_vocabulary() -> None:
    assert get_args(Impression) == IMPRESSIONS
