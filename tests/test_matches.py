"""Match records: one vocabulary, idempotent, superseded (never deleted) when re-analysis replaces a finding; and
cross-matching planned by the dispatcher when an item's analyses have all ended, without any request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import jobs, matches
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.settings import Settings
from storage.tables import CustodyEvent, Finding, Job
from tests import match_samples as samples
from tests.worker_helpers import FakeClock, fake_dispatcher, findings_of, ingest, new_case, settle
from workers import crossmatch
from workers.analyzers.base import AnalysisLimits, Analyzer, EvidenceFile, FindingData
from workers.fakes import FakeRuntime
from workers.planning import ready_to_crossmatch


def _new(**overrides: object) -> matches.NewMatch:
    fields: dict[str, object] = dict(
        modality="plate", finding_id="f-1", finding_kind="plates.plate", evidence_id="", case_id="",
        analyzer="plates", analyzer_version="2.1.0", target_kind="vehicle", target_id="v-1", score=1.0,
        threshold=0.6, method="exact", matcher="plates", matcher_version="1.0.0")
    return matches.NewMatch(**{**fields, **overrides})  # type: ignore[arg-type]


def test_a_match_speaks_one_vocabulary() -> None:
    for bad in ({"modality": "plates"}, {"target_kind": "car"}, {"method": "fuzzy"}):
        with pytest.raises(ValueError, match="is not one of"):
            _new(**bad)


def test_ready_to_crossmatch_once_every_analysis_has_ended() -> None:
    assert ready_to_crossmatch([("objects", "succeeded"), ("plates", "failed")])
    assert not ready_to_crossmatch([("objects", "succeeded"), ("plates", "queued")])
    assert not ready_to_crossmatch([("ocr", "running")])
    assert not ready_to_crossmatch([])


def test_a_match_is_recorded_once_in_either_direction(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        a, b = samples.item(session, "2026-M1"), samples.item(session, "2026-M2")
        [fa] = samples.record(session, a, "plates", "2.1.0", [samples.plate("1-ABC-234")])
        [fb] = samples.record(session, b, "plates", "2.1.0", [samples.plate("1-ABC-234")])
        pair = dict(target_kind="finding", target_evidence_id=b.id, target_case_id=b.case_id)
        first, new = matches.add_match(session, match=_new(finding_id=fa, evidence_id=a.id, case_id=a.case_id,
                                                           target_id=fb, **pair))
        again, again_new = matches.add_match(session, match=_new(finding_id=fa, evidence_id=a.id,
                                                                 case_id=a.case_id, target_id=fb, **pair))
        reverse, reverse_new = matches.add_match(session, match=_new(
            finding_id=fb, evidence_id=b.id, case_id=b.case_id, target_id=fa, target_kind="finding",
            target_evidence_id=a.id, target_case_id=a.case_id))
        assert (new, again_new, reverse_new) == (True, False, False)
        assert first.id == again.id == reverse.id
        assert [m.id for m in matches.matches_of(session, evidence_id=b.id)] == [first.id]


def test_re_analysis_supersedes_the_old_matches_and_keeps_them(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        vehicle_id = samples.vehicle(session, "1-ABC-234")
        evidence = samples.item(session, "2026-M3")
        [old] = samples.record(session, evidence, "plates", "2.0.0", [samples.plate("1-ABC-234")])
        crossmatch.crossmatch(session, evidence_id=evidence.id)
    with transaction(factory) as session:  # re-analysis replaces the finding (as record_outcome does)
        session.delete(session.get_one(Finding, old))
        [new] = samples.record(session, evidence, "plates", "2.1.0", [samples.plate("1-ABC-234")])
        result = crossmatch.crossmatch(session, evidence_id=evidence.id)
    assert (result.new, result.superseded) == (1, 1)
    with factory() as session:
        live = matches.matches_of(session, evidence_id=evidence.id)
        every = matches.matches_of(session, evidence_id=evidence.id, include_superseded=True)
        assert [(m.finding_id, m.analyzer_version) for m in live] == [(new, "2.1.0")]
        assert {m.finding_id for m in every} == {old, new}
        assert [m.superseded_at is not None for m in every if m.finding_id == old] == [True]
        assert len(matches.matches_of_target(session, target_kind="vehicle", target_id=vehicle_id)) == 1
        logged = session.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == evidence.id,
                                                            CustodyEvent.action == "cross_matched")).all()
        assert [event.detail["new_matches"] for event in logged] == [1, 1]


PLATES_BY_NAME = {"street.png": "1-ABC-234", "garage.png": "1ABC234", "blurry.png": "1-A8C-234"}


class FakePlates(Analyzer):
    """Reads the plate its file is named after (see PLATES_BY_NAME)."""

    name, version = "plates", "9.0.0"
    accepts, produces = frozenset({"image/*"}), frozenset({"plates.plate"})

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        raw = PLATES_BY_NAME[str(item.filename)]
        return [FindingData(kind="plates.plate", label=raw, data=samples.plate_data(raw, alternatives=False))]


class After(Analyzer):
    """Runs after the plates (so the item's analysis ends with the second analyzer)."""

    name, version = "after", "1"
    accepts, produces = frozenset({"image/*"}), frozenset({"test.after"})
    requires = ("plates",)

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        return [FindingData(kind="test.after", data={})]


def _png(tmp_path: Path, name: str) -> Path:
    pixels = np.random.default_rng(sum(name.encode())).integers(0, 255, (8, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / name, "PNG")
    return tmp_path / name


def _crossmatch_jobs(factory: sessionmaker[Session], evidence_id: str) -> list[Job]:
    with factory() as session:
        return list(session.scalars(select(Job).where(Job.evidence_id == evidence_id, Job.kind == crossmatch.KIND)))


def test_the_dispatcher_matches_an_item_once_its_analyses_have_ended(factory: sessionmaker[Session],
                                                                      tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path / "home", job_lease_seconds=30.0)  # type: ignore[call-arg]
    store, runtime, clock = MemoryObjectStore(), FakeRuntime(), FakeClock()
    dispatcher = fake_dispatcher(settings, factory, store, {"plates": FakePlates, "after": After}, runtime, clock)
    with transaction(factory) as session:
        vehicle_id = samples.vehicle(session, "1-ABC-234", status="wanted")
    street = ingest(factory, store, new_case(factory, "2026-S1"), _png(tmp_path, "street.png"))
    settle(dispatcher, factory)
    [job] = _crossmatch_jobs(factory, street)
    assert job.state == "succeeded"
    with factory() as session:
        [match] = matches.matches_of(session, evidence_id=street)
        assert (match.target_kind, match.target_id, match.detail["alert"]) == ("vehicle", vehicle_id, True)
        assert match.analyzer_version == "9.0.0"

    # A second item, in another case, read the same plate a little differently: it finds the register and the first.
    blurry = ingest(factory, store, new_case(factory, "2026-S2"), _png(tmp_path, "blurry.png"))
    settle(dispatcher, factory)
    with factory() as session:
        found = {m.target_kind: m for m in matches.matches_of(session, evidence_id=blurry)}
        assert set(found) == {"vehicle", "finding"}
        assert found["vehicle"].method == "tolerant" and found["vehicle"].score < 1.0
        assert found["finding"].target_evidence_id == street and found["finding"].method == "tolerant"
    settle(dispatcher, factory)
    assert len(_crossmatch_jobs(factory, street)) == 1 and len(_crossmatch_jobs(factory, blurry)) == 1

    # Re-analysis (a new plates run) matches again: the old match is superseded, the new finding matched.
    [old_finding] = findings_of(factory, street, "plates")
    with transaction(factory) as session:
        jobs.enqueue(session, kind="analysis", dedupe_key=f"analysis:{street}:plates:again", evidence_id=street,
                     analyzer="plates")
    settle(dispatcher, factory)
    [new_finding] = findings_of(factory, street, "plates")
    assert len(_crossmatch_jobs(factory, street)) == 2
    with factory() as session:
        every = matches.matches_of(session, evidence_id=street, include_superseded=True)
        live = {(m.finding_id, m.target_id) for m in every if m.superseded_at is None}
        gone = {(m.finding_id, m.target_id) for m in every if m.superseded_at is not None}
    [blurry_plate] = findings_of(factory, blurry, "plates")
    assert gone == {(old_finding.id, vehicle_id), (blurry_plate.id, old_finding.id)}  # both sides of the old one
    assert live == {(new_finding.id, vehicle_id), (new_finding.id, blurry_plate.id)}
