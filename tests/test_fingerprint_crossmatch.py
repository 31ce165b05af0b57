"""The fingerprint cross-matcher: a print in a case against the tenprint gallery (persons) and the prints of other
cases (findings), by the 1:N index and Bozorth3, with real MINDTCT templates of synthetic fingers.

Measured (Bozorth3): impressions of the same synthetic finger score 201-280, of different fingers 4-19.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from models.minutiae import parse_iso_19794_2
from storage import matches, tenprints
from storage.db import transaction
from storage.matches import Match
from storage.tables import FingerprintTemplate
from tests.fingerprint_samples import extracted_iso
from tests.test_tenprints import NFIQ2_BYTE, print_item, registered
from workers.crossmatch import crossmatch
from workers.matchers import registry
from workers.matchers.fingerprints import FingerprintCrossMatcher, gallery_cache

ONLY = {FingerprintCrossMatcher.name: FingerprintCrossMatcher}


def _gallery(session: Session) -> tuple[str, str]:
    """Two registered persons, finger 21 enrolled as the right index of the first, 22 as the left thumb of the
    second (rolled impressions, in the register's own case); their ids."""
    first, second = registered(session, 11), registered(session, 12)
    for person_id, finger, position in ((first, 21, 2), (second, 22, 6)):
        card = print_item(session, "TENPRINTS", extracted_iso(finger, 0))
        tenprints.enrol(session, person_id=person_id, evidence_id=card.id, finger=position, impression="rolled",
                        enrolled_by="examiner")
    return first, second


def _matched(session: Session, evidence_id: str) -> list[Match]:
    return list(matches.matches_of(session, evidence_id=evidence_id, modality="fingerprint"))


def _assert_charted(match: Match, probe_iso: bytes, candidate_iso: bytes) -> None:
    """The match charts its paired minutiae: one to one, the two templates' own minutiae, under one alignment."""
    pairs = match.detail["paired_minutiae"]
    assert match.detail["paired_count"] == len(pairs) >= 30  # measured 47-51 for these impressions
    assert len({p["probe_index"] for p in pairs}) == len({p["candidate_index"] for p in pairs}) == len(pairs)
    probe, candidate = parse_iso_19794_2(probe_iso).minutiae, parse_iso_19794_2(candidate_iso).minutiae
    for pair in pairs:
        assert pair["probe"][:2] == probe[pair["probe_index"], :2].tolist()
        assert pair["candidate"][:2] == candidate[pair["candidate_index"], :2].tolist()
        assert pair["residual_px"] <= match.detail["alignment"]["distance_tolerance_px"]
    alignment = match.detail["alignment"]
    assert abs(alignment["rotation_deg"]) <= 45 and len(alignment["translation_px"]) == 2  # impressions turn <= 30
    assert alignment["probe_considered"] == len(probe) and "paired_minutiae_note" not in match.detail


def test_the_fingerprint_matcher_is_registered() -> None:
    assert registry.load_all()["fingerprints"] is FingerprintCrossMatcher
    assert FingerprintCrossMatcher.consumes == {"fingerprint.template"}


def test_a_latent_matches_the_enrolled_person_once(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        first, second = _gallery(session)
        latent = print_item(session, "2026-0101", extracted_iso(21, 1))
        result = crossmatch(session, evidence_id=latent.id, matchers=ONLY)
        [match] = _matched(session, latent.id)
        assert result.new == 1 and (match.target_kind, match.target_id) == ("person", first)
        assert match.score >= 200 and match.threshold == 40 and match.matcher == "fingerprints"
        assert match.detail["finger"] == 2 and match.detail["finger_name"] == "right index"
        assert match.detail["impression"] == "rolled"
        assert match.detail["probe_nfiq2"] == extracted_iso(21, 1)[NFIQ2_BYTE]
        assert match.detail["candidate_nfiq2"] == extracted_iso(21, 0)[NFIQ2_BYTE]
        assert match.detail["probe_minutiae"] > 0 and match.detail["candidate_minutiae"] > 0
        _assert_charted(match, extracted_iso(21, 1), extracted_iso(21, 0))
        assert not matches.matches_of_target(session, target_kind="person", target_id=second)
        again = crossmatch(session, evidence_id=latent.id, matchers=ONLY)
        assert again.new == 0 and len(_matched(session, latent.id)) == 1


def test_another_finger_matches_nothing(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        _gallery(session)
        stranger = print_item(session, "2026-0102", extracted_iso(23, 1))
        result = crossmatch(session, evidence_id=stranger.id, matchers=ONLY)
        assert result.findings == 1 and result.new == 0 and not _matched(session, stranger.id)


def test_the_same_finger_in_another_case_is_a_cross_case_match(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        first, _ = _gallery(session)
        earlier = print_item(session, "2026-0103", extracted_iso(21, 1))
        crossmatch(session, evidence_id=earlier.id, matchers=ONLY)
        later = print_item(session, "2026-0104", extracted_iso(21, 2))
        crossmatch(session, evidence_id=later.id, matchers=ONLY)
        found = {m.target_kind: m for m in _matched(session, later.id) if m.evidence_id == later.id}
        assert set(found) == {"person", "finding"} and found["person"].target_id == first
        across = found["finding"]
        assert across.target_evidence_id == earlier.id and across.target_case_id == earlier.case_id
        assert across.case_id == later.case_id and across.detail["same_case"] is False and across.score >= 200
        _assert_charted(across, extracted_iso(21, 2), extracted_iso(21, 1))
        assert crossmatch(session, evidence_id=earlier.id, matchers=ONLY).new == 0  # the pair is kept once


def test_the_gallery_index_is_cached_and_follows_the_record_store(factory: sessionmaker[Session]) -> None:
    cache = gallery_cache()
    with transaction(factory) as session:
        _gallery(session)
        first = print_item(session, "2026-0105", extracted_iso(22, 1))
        crossmatch(session, evidence_id=first.id, matchers=ONLY)
        rebuilds, held = cache.rebuilds, len(cache.index)
        assert held == 3
        second = print_item(session, "2026-0106", extracted_iso(23, 2))
        crossmatch(session, evidence_id=second.id, matchers=ONLY)
        assert (cache.rebuilds, len(cache.index)) == (rebuilds, 4)  # a new template is added, not rebuilt
        assert crossmatch(session, evidence_id=second.id, matchers=ONLY).new == 0 and cache.rebuilds == rebuilds
        session.execute(delete(FingerprintTemplate).where(FingerprintTemplate.evidence_id == first.id))
        crossmatch(session, evidence_id=second.id, matchers=ONLY)
        assert (cache.rebuilds, len(cache.index)) == (rebuilds + 1, 3)  # a deleted template: built again
        assert str(cache.state.max_id) in cache.evidence_of
