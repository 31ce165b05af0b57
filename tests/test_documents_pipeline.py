"""Documents and fingerprints end to end on real local Ray, through the case API.

OCR (PDF text layer, image-only PDF, rotated multi-page TIFF), entities from the text, full-text search;
fingerprints declared at upload or sent as WSQ, templates, a failed result for a blank and for a photo declared
as a print, 1:1 verification and a 1:N search that finds the mate in another case (a cross-case lead).
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from models.ocr import character_error_rate
from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from tests.api_helpers import log_in, purpose
from tests.fingerprint_samples import encode_png, real_latent, real_latent_wsq, reimpress, synthetic_impression
from tests.media_samples import bus_jpg_path, text_layer_pdf
from tests.test_dispatcher import _run_until_settled, ray_cluster  # noqa: F401 - a module-scoped fixture
from tests.text_samples import render_page, rotate_page
from workers.analyzers import registry
from workers.dispatcher import Dispatcher
from workers.service import ray_actor_factory, ray_matcher_factory

pytestmark = [pytest.mark.timeout(900), pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
V1 = "/api/v1"
ANALYZERS = ("ocr", "entities", "fingerprints")
WHY = purpose("2026-0500", "trace the burglar through earlier prints")


def national_number(born: str, serial: int) -> str:
    """YY.MM.DD-SSS.CC for someone born in the 1900s (check = 97 - first nine digits mod 97)."""
    first = f"{born}{serial:03d}"
    return f"{first[:2]}.{first[2:4]}.{first[4:6]}-{first[6:]}.{97 - int(first) % 97:02d}"


def belgian_iban(account: int) -> str:
    """A valid Belgian IBAN for a 10-digit account number (its own mod-97 check, then the IBAN's)."""
    bban = f"{account:010d}{account % 97 or 97:02d}"
    check = 98 - int(bban + "111400") % 97  # "BE00" moved to the end: B=11, E=14
    return f"BE{check:02d}{bban}"


def _upload(client: TestClient, case_id: str, name: str, data: bytes, **fields: str) -> str:
    response = client.post(f"{V1}/cases/{case_id}/evidence", files={"file": (name, data)}, data=fields)
    assert response.status_code == 201, response.text
    return str(response.json()["evidence"]["id"])


def _pdf_of(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PDF", resolution=150.0)
    return buffer.getvalue()


def _tiff_of(*pages: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    first, *rest = [Image.fromarray(page).convert("L") for page in pages]
    first.save(buffer, "TIFF", save_all=True, append_images=rest, compression="tiff_lzw", dpi=(150, 150))
    return buffer.getvalue()


def _wait_for(client: TestClient, request_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"{V1}/fingerprints/requests/{request_id}", headers=WHY).json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"match request {request_id} did not finish")


def _by_kind(client: TestClient, evidence_id: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for finding in client.get(f"{V1}/evidence/{evidence_id}/findings").json():
        found.setdefault(finding["kind"], []).append(finding)
    return found


def _failures(client: TestClient, evidence_id: str) -> dict[str, str]:
    runs = client.get(f"{V1}/evidence/{evidence_id}/analysis").json()["runs"]
    return {run["analyzer"]: run["error"] for run in runs if run["status"] == "failed"}


def test_documents_and_fingerprints_end_to_end(ray_cluster: None, settings: Settings,  # noqa: F811
                                               factory: sessionmaker[Session], s3_store: S3ObjectStore,
                                               tmp_path: Path) -> None:
    settings = settings.model_copy(update={"job_lease_seconds": 300.0, "analyzers": ",".join(ANALYZERS)})
    number, iban = national_number("850730", 33), belgian_iban(123456789)
    statement = [
        "Proces-verbaal van verhoor, Liège, 12 januari 2024.",
        f"De verdachte, rijksregisternummer {number}, reed met de wagen 1-ABC-234.",
        f"Rekening {iban}, telefoon 0478 12 34 56, e-mail j.peeters@example.be.",
    ]
    french, german, english = render_page("fra"), render_page("deu"), render_page("eng")
    mate = reimpress(real_latent(), seed=5, max_rotation=20.0, occlusion=0.0)

    with TestClient(create_app(settings, store=s3_store)) as client:

        log_in(client)
        case = client.post(f"{V1}/cases", json={"reference": "2026-0500", "title": "Burglary"}).json()["id"]
        other_case = client.post(f"{V1}/cases", json={"reference": "2025-0090", "title": "Older burglary"}).json()
        layer = _upload(client, case, "pv.pdf", text_layer_pdf([statement]))
        scanned = _upload(client, case, "scan.pdf", _pdf_of(french.image))
        tiff = _upload(client, case, "pages.tif", _tiff_of(rotate_page(german.image, 90), english.image))
        latent = _upload(client, case, "latent.wsq", real_latent_wsq())  # WSQ: a print whatever is declared
        latent_mate = _upload(client, case, "mate.png", encode_png(mate, dpi=500), evidence_kind="fingerprint")
        finger_a = _upload(client, other_case["id"], "a0.png", encode_png(synthetic_impression(4, 0)),
                           evidence_kind="fingerprint")
        finger_a2 = _upload(client, case, "a1.png", encode_png(synthetic_impression(4, 1)),
                            evidence_kind="fingerprint", ppi="500")
        finger_b = _upload(client, case, "b0.png", encode_png(synthetic_impression(9, 0)), evidence_kind="fingerprint")
        blank = _upload(client, case, "blank.png", encode_png(np.full((400, 360), 240, np.uint8)),
                        evidence_kind="fingerprint")
        photo_as_print = _upload(client, case, "bus.jpg", bus_jpg_path().read_bytes(), evidence_kind="fingerprint")

        analyzers = registry.select(list(ANALYZERS))
        dispatcher = Dispatcher(settings, factory, s3_store, analyzers,
                                actor_factory=ray_actor_factory(settings, analyzers),
                                matcher_factory=ray_matcher_factory(settings))
        dispatcher.warm_up()
        _run_until_settled(dispatcher, factory, timeout=600)

        # Text layer: exact text, and every entity in it.
        found = _by_kind(client, layer)
        page = found["text.page"][0]["data"]
        assert page["engine"] == "pdf-text-layer" and "Liège" in page["text"] and page["language"] == "nld"
        entities = {(f["kind"], f["label"]) for kinds, items in found.items() if kinds.startswith("entity.")
                    for f in items}
        assert {("entity.national_number", number.replace(".", "").replace("-", "")),
                ("entity.iban", iban), ("entity.phone", "+32478123456"), ("entity.plate", "1-ABC-234"),
                ("entity.email", "j.peeters@example.be"), ("entity.date", "2024-01-12")} <= entities

        # An image-only PDF and a rotated two-page TIFF are read by Tesseract, each page in its language.
        scanned_page = _by_kind(client, scanned)["text.page"][0]["data"]
        assert scanned_page["engine"] == "tesseract" and scanned_page["language"] == "fra"
        assert character_error_rate(french.text, scanned_page["text"]) < 0.05
        tiff_pages = sorted(_by_kind(client, tiff)["text.page"], key=lambda f: f["data"]["page"])
        assert [p["data"]["language"] for p in tiff_pages] == ["deu", "eng"]
        assert tiff_pages[0]["data"]["rotation"] in (90, 270)
        assert character_error_rate(german.text, tiff_pages[0]["data"]["text"]) < 0.05

        # Full-text search, accents folded, within a case and across cases.
        hits = client.get(f"{V1}/search", params={"q": "liege verdachte"}, headers=WHY).json()
        assert [(hit["evidence_id"], hit["page"]) for hit in hits] == [(layer, 1)] and "Liège" in hits[0]["snippet"]
        french_word = max(french.text.split(), key=len).strip(".,;:")
        assert scanned in {hit["evidence_id"] for hit in client.get(
            f"{V1}/cases/{case}/search", params={"q": french_word}).json()}
        assert client.get(f"{V1}/cases/{other_case['id']}/search", params={"q": "liege"}).json() == []

        # Fingerprints: templates, clear failures, and no template for a photo declared as a print.
        for item in (latent, latent_mate, finger_a, finger_a2, finger_b):
            template = _by_kind(client, item)["fingerprint.template"][0]["data"]
            assert template["minutiae"] >= 12 and 0 <= template["nfiq2"] <= 100, template
        assert _by_kind(client, latent)["fingerprint.template"][0]["data"]["resolution_warning"]  # no ppi in file
        assert "blank" in _failures(client, blank)["fingerprints"].lower() or "contrast" in _failures(
            client, blank)["fingerprints"].lower()
        assert "fingerprints" in _failures(client, photo_as_print)
        assert client.get(f"{V1}/evidence/{latent}/fingerprint-template").content[:4] == b"FMR\x00"

        stop = threading.Event()  # the dispatcher hands match requests to the matcher actor
        loop = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
        loop.start()
        try:
            _check_matching(client, latent=latent, latent_mate=latent_mate, finger_a=finger_a,
                            finger_a2=finger_a2, finger_b=finger_b)
        finally:
            stop.set()
            loop.join(timeout=30)


def _check_matching(client: TestClient, *, latent: str, latent_mate: str, finger_a: str, finger_a2: str,
                    finger_b: str) -> None:
    """1:1 verification separates the latent's mate from another finger; 1:N finds a mate in another case."""
    genuine = _wait_for(client, client.post(f"{V1}/fingerprints/verifications", headers=WHY, json={
        "probe_evidence_id": latent, "candidate_evidence_id": latent_mate}).json()["id"])
    impostor = _wait_for(client, client.post(f"{V1}/fingerprints/verifications", headers=WHY, json={
        "probe_evidence_id": latent, "candidate_evidence_id": finger_b}).json()["id"])
    assert genuine["result"]["score"] > impostor["result"]["score"]
    assert genuine["result"]["probable_match"] and not impostor["result"]["probable_match"]

    search = _wait_for(client, client.post(f"{V1}/fingerprints/searches", headers=WHY, json={
        "probe_evidence_id": finger_a2, "limit": 3}).json()["id"])
    best = search["result"]["candidates"][0]
    assert (best["evidence_id"], best["case_reference"], best["rank"]) == (finger_a, "2025-0090", 1)
    assert best["probable_match"] and search["result"]["gallery_size"] == 5
    assert finger_a2 not in {c["evidence_id"] for c in search["result"]["candidates"]}
