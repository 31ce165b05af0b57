"""Issue 12's bar end to end, on real local Ray, real SeaweedFS and the record store, through the case API.

A person is registered with a reference photo (scikit-image's astronaut, analysed like evidence) and a car; a
photo of her beside that car (`tests.e2e_scene`) is uploaded to a new case and, with no request from anyone, the
cross-matcher that runs when the item's analyses end links its face to the person and its plate to the car. The
plate is also one OCR-confusable character away from a second registered vehicle ("1A8 2345" for the "1AB 2345"
read), which it matches through the tolerant path. A near-duplicate of the photo (80 % crop, JPEG q60) uploaded
to a second case is matched with the first photo across the two cases, verified by RANSAC.

One dispatcher runs on Ray for the whole test, as the worker service does; the test only uploads, links and
reads, and waits for the items' states (never for a fixed time).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from storage.tables import Finding, Job
from tests.api_helpers import V1, log_in, purpose
from tests.e2e_scene import near_duplicate, reference_photo, scene_photo
from tests.plate_samples import SAMPLES
from tests.register_samples import person
from tests.test_dispatcher import ray_cluster  # noqa: F401 - a module-scoped fixture
from workers.analyzers import registry
from workers.dispatcher import Dispatcher
from workers.matchers.faces import DISTANCE_THRESHOLD, dlib_vector
from workers.service import ray_actor_factory, ray_matcher_factory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
ANALYZERS = ("hashes", "media_probe", "objects", "plates", "faces", "similarity")
PLATE = next(sample for sample in SAMPLES if sample.name == "CZ")  # "1AB 2345": read whole, Czech by its format
CONFUSED_PLATE = "1A8 2345"  # B read as 8: one OCR confusion away
SETTLE_SECONDS = 300.0  # per item, on two shared cores (a cold item takes ~20 s alone)
POLL_SECONDS = 0.2


@pytest.fixture
def dispatcher(ray_cluster: None, settings: Settings, factory: sessionmaker[Session],  # noqa: F811
               s3_store: S3ObjectStore) -> Iterator[Dispatcher]:
    """The worker service's dispatcher, on Ray actors for the image analyzers and a matcher actor holding the
    indexes, running until the test ends."""
    analyzers = registry.select(list(ANALYZERS))
    settings = settings.model_copy(update={"job_lease_seconds": 120.0})  # two busy cores: no lease runs out
    running = Dispatcher(settings, factory, s3_store, analyzers, actor_factory=ray_actor_factory(settings, analyzers),
                         matcher_factory=ray_matcher_factory(settings, fingerprints=False))
    running.warm_up()
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    yield running
    stop.set()
    thread.join(timeout=60)


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = SETTLE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def cross_matched(factory: sessionmaker[Session], evidence_id: str) -> bool:
    """Whether the item's analyses have all ended and its cross-matching has run (no job of it still open)."""
    with factory() as session:
        states = dict(session.execute(select(Job.state, func.count()).where(Job.evidence_id == evidence_id)
                                      .group_by(Job.state)).tuples().all())
        matched = session.scalar(select(func.count()).select_from(Job).where(
            Job.evidence_id == evidence_id, Job.kind == "crossmatch", Job.state == "succeeded"))
    return bool(matched) and not states.get("queued") and not states.get("running")


def upload(client: TestClient, case_id: str, path: Path) -> str:
    media_type = "image/png" if path.suffix == ".png" else "image/jpeg"
    created = _ok(client.post(f"{V1}/cases/{case_id}/evidence", files={"file": (path.name, path.read_bytes(),
                                                                                  media_type)}), 201)
    return str(created["evidence"]["id"])


def faces_of(factory: sessionmaker[Session], evidence_id: str) -> list[np.ndarray]:
    with factory() as session:
        rows = session.scalars(select(Finding.data).where(Finding.evidence_id == evidence_id,
                                                          Finding.kind == "faces.face")).all()
    return [np.asarray(vector) for vector in (dlib_vector(dict(data)) for data in rows) if vector is not None]


def by_target(found: list[dict[str, Any]], modality: str, kind: str) -> dict[str, dict[str, Any]]:
    """The matches of `modality` to targets of `kind`, by the target's record id (or finding id): the best scored
    of each target (the API lists the highest score first)."""
    best: dict[str, dict[str, Any]] = {}
    for match in found:
        if match["modality"] == modality and match["target"]["kind"] == kind:
            best.setdefault(match["target"]["record_id"] or match["target"]["finding_id"], match)
    return best


def test_a_photo_of_a_registered_person_beside_her_car_is_matched_with_no_request(
        dispatcher: Dispatcher, settings: Settings, factory: sessionmaker[Session], s3_store: S3ObjectStore,
        tmp_path: Path) -> None:
    assert dispatcher.local_matcher is None and len(dispatcher.matchers) == 1  # matching runs on a Ray actor
    with TestClient(create_app(settings, store=s3_store)) as client:
        log_in(client)
        cases = {reference: _ok(client.post(f"{V1}/cases", json={"reference": reference, "title": title}), 201)["id"]
                 for reference, title in (("2026-1200", "Reference photos"), ("2026-1201", "Car theft, Gent"),
                                          ("2026-1202", "Fraud, Brugge"))}
        # The registers: the person, her car (read exactly) and a vehicle one OCR confusion away from it.
        fields = person(12)
        someone = _ok(client.post(f"{V1}/persons", json=fields), 201)
        car = _ok(client.post(f"{V1}/vehicles", json={
            "plate": PLATE.text, "country": "CZ", "make": "Škoda", "model": "Octavia", "colour": "blue",
            "owner_national_number": fields["national_number"], "status": "stolen",
            "status_authority": "Policie ČR", "status_date": "2026-03-01"}), 201)
        confusable = _ok(client.post(f"{V1}/vehicles", json={"plate": CONFUSED_PLATE, "country": "CZ",
                                                             "make": "Tatra", "model": "T815"}), 201)

        # The reference photo is evidence of its own, analysed first; linking it makes it the person's.
        reference = upload(client, cases["2026-1200"], reference_photo(tmp_path))
        _ok(client.put(f"{V1}/persons/{someone['id']}/photos/{reference}"), 201)
        wait_until(lambda: cross_matched(factory, reference), "the reference photo's analysis")
        [reference_face] = faces_of(factory, reference)

        # A different photo of her beside the car, to a new case: nothing is asked for but the upload.
        scene_path = scene_photo(PLATE, tmp_path)
        scene = upload(client, cases["2026-1201"], scene_path)
        wait_until(lambda: cross_matched(factory, scene), "the scene's analysis and cross-matching")
        distances = [float(np.linalg.norm(face - reference_face)) for face in faces_of(factory, scene)]
        assert min(distances) < DISTANCE_THRESHOLD, distances  # the pasted face is hers to dlib

        found = _ok(client.get(f"{V1}/evidence/{scene}/matches", params={"limit": 200},
                               headers=purpose("2026-1201")))
        faces = by_target(found, "face", "person")
        assert set(faces) == {someone["id"]}, found
        face = faces[someone["id"]]
        assert face["status"] == "candidate" and face["score"] >= face["threshold"] == 0.5
        assert face["target"]["person"]["national_number"] == fields["national_number"]
        assert face["detail"]["reference_evidence_id"] == reference
        assert face["detail"]["distance"] == pytest.approx(min(distances), abs=1e-3)

        plates = by_target(found, "plate", "vehicle")
        assert set(plates) == {car["id"], confusable["id"]}, found
        exact, tolerant = plates[car["id"]], plates[confusable["id"]]
        assert (exact["method"], exact["score"]) == ("exact", 1.0)
        assert exact["detail"]["reading"] == PLATE.text and exact["detail"]["alert"] is True
        assert exact["target"]["vehicle"]["owner_national_number"] == fields["national_number"]
        assert tolerant["method"] == "tolerant" and exact["score"] > tolerant["score"] >= tolerant["threshold"]
        assert tolerant["detail"]["register_plate"] == CONFUSED_PLATE and tolerant["detail"]["confusions"]
        assert tolerant["detail"]["alert"] is False
        assert all(match["finding"]["evidence_id"] == scene for match in (face, exact, tolerant))

        # A near-duplicate of the scene (80 % crop, re-encoded) to a second case: matched across the cases.
        copy = upload(client, cases["2026-1202"], near_duplicate(scene_path, tmp_path))
        wait_until(lambda: cross_matched(factory, copy), "the near-duplicate's analysis and cross-matching")
        found = _ok(client.get(f"{V1}/evidence/{copy}/matches", params={"limit": 200},
                               headers=purpose("2026-1202")))
        images = [match for match in found if match["modality"] == "image"]
        assert len(images) == 1, found
        [image] = images
        sides = {image["finding"]["evidence_id"]: image["finding"], image["target"]["evidence_id"]: image["target"]}
        assert set(sides) == {scene, copy} and image["other_case"] is True
        assert sides[scene]["case_reference"] == "2026-1201" and sides[copy]["case_reference"] == "2026-1202"
        detail = image["detail"]
        assert detail["inliers"] >= detail["thresholds"]["min_inliers"] and detail["same_case"] is False
        assert len(detail["transform"]) == 3 and all(len(row) == 3 for row in detail["transform"])
        assert image["score"] >= image["threshold"] == 0.6
        # The copy's plate finds the scene's plate in the other case, and the register, as the scene's did.
        assert {car["id"], confusable["id"]} <= set(by_target(found, "plate", "vehicle"))
        assert any(match["target"]["evidence_id"] == scene and match["other_case"]
                   for match in by_target(found, "plate", "finding").values())
        assert someone["id"] in by_target(found, "face", "person")
