"""The image matcher on real photos: a near-duplicate in another case is matched once, verified by RANSAC with
its homography; a different photo is not; a picture made to collide with PDQ is refused by verification.

The findings are the real hashes and similarity analyzers' (run once per image for the module), recorded on
both record stores, with the keypoint files in an in-memory object store as the analyzer actor stores them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter
from sqlalchemy.orm import Session, sessionmaker

from models.keypoints import MIN_INLIERS
from storage import matches
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.settings import Settings
from storage.tables import Evidence, Finding
from tests import match_samples as samples
from tests.media_samples import bus_jpg_path, evidence, skimage_data_path, zidane_jpg_path
from workers.analyzers.base import AnalysisLimits, FindingData
from workers.analyzers.hashes import HashesAnalyzer, pdq_distance
from workers.analyzers.similarity import SimilarityAnalyzer
from workers.crossmatch import MatchContext, crossmatch, subjects_of
from workers.matchers import image_indexes
from workers.matchers.images import PDQ_MAX_DISTANCE, THRESHOLD, ImageMatcher

Findings = list[tuple[str, str | None, dict[str, Any]]]
MATCHERS = {ImageMatcher.name: ImageMatcher}
BLUR = 10  # px: below PDQ's 64 x 64 cells of a 810 px photo, above the keypoints' corners


def _near_duplicate(path: Path) -> Path:
    """bus.jpg: its central 80 %, resized to 60 %, re-encoded as JPEG q60."""
    with Image.open(bus_jpg_path()) as bus:
        width, height = bus.size
        crop = bus.convert("RGB").crop((round(width * 0.1), round(height * 0.1), round(width * 0.9),
                                        round(height * 0.9)))
    crop.resize((round(crop.width * 0.6), round(crop.height * 0.6)), Image.Resampling.LANCZOS).save(
        path, "JPEG", quality=60)
    return path


def _resized(path: Path) -> Path:
    """bus.jpg at half size, re-encoded as JPEG q60 (whole: PDQ still sees the same picture)."""
    with Image.open(bus_jpg_path()) as bus:
        bus.convert("RGB").resize((bus.width // 2, bus.height // 2), Image.Resampling.LANCZOS).save(
            path, "JPEG", quality=60)
    return path


def _pdq_collider(path: Path) -> Path:
    """Another picture with bus.jpg's low frequencies: bus blurred, plus coffee's detail (coffee less its blur).
    PDQ sees only the low frequencies (a 64 x 64 reduction), the keypoints only the detail."""
    with Image.open(bus_jpg_path()) as bus, Image.open(skimage_data_path("coffee.png")) as coffee:
        base = bus.convert("RGB")
        other = coffee.convert("RGB").resize(base.size)
    low = np.asarray(base.filter(ImageFilter.GaussianBlur(BLUR)), dtype=np.float32)
    detail = np.asarray(other, dtype=np.float32) - np.asarray(other.filter(ImageFilter.GaussianBlur(BLUR)),
                                                                dtype=np.float32)
    Image.fromarray(np.clip(low + detail, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)
    return path


def _stored(store: MemoryObjectStore, name: str, finding: FindingData) -> tuple[str, str | None, dict[str, Any]]:
    """The finding as the analyzer actor records it: artifacts in the derived bucket, listed in its data."""
    data = dict(finding.data)
    if finding.artifacts:
        data["artifacts"] = []
        for artifact in finding.artifacts:
            obj = store.put_derived(f"evidence/{name}/similarity/{artifact.name}", artifact.data,
                                    content_type=artifact.content_type)
            data["artifacts"].append({"name": artifact.name, "bucket": obj.bucket, "key": obj.key,
                                      "version_id": obj.version_id, "size": obj.size,
                                      "sha256": hashlib.sha256(artifact.data).hexdigest(),
                                      "content_type": artifact.content_type})
    return finding.kind, finding.label, data


@pytest.fixture(scope="module")
def store() -> MemoryObjectStore:
    return MemoryObjectStore()


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, store: MemoryObjectStore) -> dict[str, dict[str, Findings]]:
    """Each photo's findings from the real hashes and similarity analyzers, by photo and analyzer."""
    folder = tmp_path_factory.mktemp("images")
    photos = {"bus": bus_jpg_path(), "copy": _near_duplicate(folder / "copy.jpg"),
              "resized": _resized(folder / "resized.jpg"), "zidane": zidane_jpg_path(),
              "astronaut": skimage_data_path("astronaut.png"), "collider": _pdq_collider(folder / "collider.jpg")}
    similarity = SimilarityAnalyzer()
    similarity.load()
    hashes, limits = HashesAnalyzer(), AnalysisLimits()
    found: dict[str, dict[str, Findings]] = {}
    for name, path in photos.items():
        found[name] = {
            "hashes": [_stored(store, name, f) for f in hashes.analyze(evidence(path), limits)
                       if f.kind == "hash.pdq"],
            "similarity": [_stored(store, name, f) for f in similarity.analyze(evidence(path), limits)]}
    return found


@pytest.fixture
def context(tmp_path: Path, store: MemoryObjectStore) -> Iterator[MatchContext]:
    yield MatchContext(settings=Settings(home=tmp_path / "home"), store=store)


def _item(session: Session, case: str, findings: dict[str, Findings]) -> Evidence:
    item = samples.item(session, case)
    samples.record(session, item, "hashes", HashesAnalyzer.version, findings["hashes"])
    samples.record(session, item, "similarity", SimilarityAnalyzer.version, findings["similarity"])
    return item


def _pdq(findings: dict[str, Findings]) -> dict[str, Any]:
    [(_, _, data)] = findings["hashes"]
    return data


def test_a_near_duplicate_in_another_case_is_matched_once_with_its_homography(
        factory: sessionmaker[Session], analysed: dict[str, dict[str, Findings]], context: MatchContext) -> None:
    with transaction(factory) as session:
        original = _item(session, "2026-IMG-1", analysed["bus"])
        copy = _item(session, "2026-IMG-2", analysed["copy"])
        different = _item(session, "2026-IMG-2", analysed["zidane"])
        first = crossmatch(session, evidence_id=original.id, matchers=MATCHERS, context=context)
    with transaction(factory) as session:  # the copy's own matching finds the same pair: nothing new
        again = [crossmatch(session, evidence_id=item.id, matchers=MATCHERS, context=context).new
                 for item in (copy, original, different)]
    assert (first.new, again) == (1, [0, 0, 0])
    with factory() as session:
        [match] = matches.matches_of(session, modality="image")
        assert not matches.matches_of(session, evidence_id=different.id)
    assert (match.evidence_id, match.target_evidence_id, match.target_kind) == (original.id, copy.id, "finding")
    assert match.case_id != match.target_case_id and match.detail["same_case"] is False
    assert (match.matcher, match.method, match.threshold) == ("images", "similarity", THRESHOLD)
    assert THRESHOLD <= match.score <= 1.0
    detail = match.detail
    assert detail["inliers"] >= MIN_INLIERS and detail["model"] in ("similarity", "homography")
    # An 80 % crop moves PDQ's 64 x 64 grid: the hashes are further apart than 31, the scene embedding finds it.
    assert detail["pdq_distance"] == pdq_distance(_pdq(analysed["bus"])["pdq"], _pdq(analysed["copy"])["pdq"])
    assert detail["found_by"] == ["scene"] and detail["pdq_distance"] > PDQ_MAX_DISTANCE, detail["pdq_distance"]
    assert detail["cosine"] >= 0.9
    # The matrix maps the original to the copy: its centre to the copy's centre, at the copy's scale (0.6).
    matrix = np.array(detail["transform"])
    assert matrix.shape == (3, 3)
    with Image.open(bus_jpg_path()) as bus:
        width, height = bus.size
    centre = matrix @ np.array([width / 2, height / 2, 1.0])
    assert np.allclose(centre[:2] / centre[2], [width * 0.8 * 0.6 / 2, height * 0.8 * 0.6 / 2], atol=4.0)
    assert abs(np.linalg.det(matrix[:2, :2]) ** 0.5 - 0.6) < 0.02


def test_a_resized_copy_is_found_by_both_indexes(
        factory: sessionmaker[Session], analysed: dict[str, dict[str, Findings]], context: MatchContext) -> None:
    with transaction(factory) as session:
        original = _item(session, "2026-IMG-8", analysed["bus"])
        resized = _item(session, "2026-IMG-8", analysed["resized"])
        assert crossmatch(session, evidence_id=resized.id, matchers=MATCHERS, context=context).new == 1
    with factory() as session:
        [match] = matches.matches_of(session, evidence_id=original.id)
    assert match.detail["found_by"] == ["pdq", "scene"] and match.detail["same_case"] is True
    assert match.detail["pdq_distance"] <= PDQ_MAX_DISTANCE and match.detail["inliers"] >= MIN_INLIERS
    scale = abs(np.linalg.det(np.array(match.detail["transform"])[:2, :2])) ** 0.5
    assert abs(scale - 2.0) < 0.05  # from the half-size copy (side A) back to the original


def test_a_picture_that_collides_with_pdq_is_refused_by_verification(
        factory: sessionmaker[Session], analysed: dict[str, dict[str, Findings]], context: MatchContext) -> None:
    original, collider = _pdq(analysed["bus"]), _pdq(analysed["collider"])
    assert original["reliable"] and collider["reliable"]
    assert pdq_distance(original["pdq"], collider["pdq"]) <= PDQ_MAX_DISTANCE  # PDQ alone would call it the same
    with transaction(factory) as session:
        bus = _item(session, "2026-IMG-3", analysed["bus"])
        other = _item(session, "2026-IMG-4", analysed["collider"])
        [subject] = [s for s in subjects_of(session, evidence_id=other.id) if s.kind == "similarity.embedding"]
        [assessment] = ImageMatcher().assess(session, subject, context=context)
        result = crossmatch(session, evidence_id=other.id, matchers=MATCHERS, context=context)
    assert assessment.target.evidence_id == bus.id and "pdq" in assessment.found_by
    assert not assessment.accepted and assessment.reason.startswith("geometric verification failed")
    assert assessment.verification is not None and assessment.verification["inliers"] < MIN_INLIERS
    assert result.new == 0


def test_different_photos_are_not_matched_and_an_item_never_matches_itself(
        factory: sessionmaker[Session], analysed: dict[str, dict[str, Findings]], context: MatchContext) -> None:
    with transaction(factory) as session:
        items = [_item(session, "2026-IMG-5", analysed[name]) for name in ("bus", "zidane", "astronaut")]
        results = [crossmatch(session, evidence_id=item.id, matchers=MATCHERS, context=context) for item in items]
    assert [r.new for r in results] == [0, 0, 0] and [r.findings for r in results] == [1, 1, 1]
    with factory() as session:
        assert not matches.matches_of(session, modality="image")


def test_the_indexes_follow_replaced_findings(
        factory: sessionmaker[Session], analysed: dict[str, dict[str, Findings]], context: MatchContext) -> None:
    """A re-analysis replaces the copy's findings: the old ids leave the indexes, the new ones match again."""
    assert context.settings is not None
    with transaction(factory) as session:
        original = _item(session, "2026-IMG-6", analysed["bus"])
        copy = _item(session, "2026-IMG-7", analysed["copy"])
        assert crossmatch(session, evidence_id=copy.id, matchers=MATCHERS, context=context).new == 1
    holder = image_indexes.image_indexes()
    with transaction(factory) as session:
        old = [f.id for f in session.query(Finding).filter(Finding.evidence_id == copy.id)]
        session.query(Finding).filter(Finding.evidence_id == copy.id).delete()
        _replace(session, copy, analysed["copy"])
        result = crossmatch(session, evidence_id=copy.id, matchers=MATCHERS, context=context)
        pdq, scene = holder.synced(session, home=context.settings.home)
        assert not any(fid in pdq or fid in scene for fid in old)
    assert (result.superseded, result.new) == (1, 1)
    with factory() as session:
        live = matches.matches_of(session, evidence_id=original.id)
    assert len(live) == 1 and live[0].superseded_at is None


def _replace(session: Session, item: Evidence, findings: dict[str, Findings]) -> None:
    samples.record(session, item, "hashes", HashesAnalyzer.version, findings["hashes"])
    samples.record(session, item, "similarity", SimilarityAnalyzer.version, findings["similarity"])

