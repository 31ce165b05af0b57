"""Analysis planning with dependencies: an analyzer runs once those it requires have ended, with their findings."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import intake, jobs, records
from storage.analysis import RunOutcome, record_outcome
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.settings import Settings
from storage.tables import Evidence, Job
from tests.media_samples import bus_jpg_path, pdf_bytes
from workers.analyzers.base import AnalysisLimits, Analyzer, EvidenceFile, FindingData
from workers.dispatcher import Dispatcher


class Detector(Analyzer):
    name, version = "detector", "1"
    accepts, produces = frozenset({"image/*"}), frozenset({"test.box"})

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        return []


class Reader(Analyzer):
    name, version = "reader", "1"
    accepts, produces = frozenset({"*"}), frozenset({"test.text"})
    requires = ("detector",)

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        return []


@pytest.fixture
def dispatcher(factory: sessionmaker[Session], tmp_path: Path) -> Dispatcher:
    settings = Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    return Dispatcher(settings, factory, MemoryObjectStore(), {"detector": Detector, "reader": Reader},
                      actor_factory=lambda name: object())


def _evidence(factory: sessionmaker[Session], path: Path) -> Evidence:
    data = path.read_bytes()
    with transaction(factory) as session:
        case = records.create_case(session, reference=f"C-{path.stem}", title="t", description="", created_by="t")
        return intake.ingest_file(session, MemoryObjectStore(), case=case, path=path,
                                  sha256=hashlib.sha256(data).hexdigest(), size=len(data), filename=path.name,
                                  declared_media_type=None, actor="t").evidence


def _analysis_jobs(factory: sessionmaker[Session]) -> dict[str, str]:
    with factory() as session:
        return {job.analyzer or "": job.state for job in session.scalars(select(Job).where(Job.kind == "analysis"))}


def _end(factory: sessionmaker[Session], analyzer: str, status: str, findings: list[dict[str, Any]]) -> None:
    [claimed] = [j for j in jobs.claim(factory, kinds=["analysis"], owner="w", lease_seconds=30, limit=10)
                 if j.analyzer == analyzer]
    with transaction(factory) as session:
        record_outcome(session, job_id=claimed.id, owner="w", attempt=1, outcome=RunOutcome(
            analyzer=analyzer, analyzer_version="1", status=status, findings=findings,
            error=None if status == "succeeded" else "broken", finished_at=dt.datetime.now(dt.UTC)))


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_dependent_waits_for_its_requirement(dispatcher: Dispatcher, factory: sessionmaker[Session],
                                             status: str) -> None:
    evidence = _evidence(factory, bus_jpg_path())
    with transaction(factory) as session:
        assert dispatcher._plan(session, session.get_one(Evidence, evidence.id)) == ["detector"]
    assert _analysis_jobs(factory) == {"detector": "queued"}
    box = {"kind": "test.box", "label": "bus", "confidence": 0.9, "data": {"box": [1, 2, 3, 4]}}
    _end(factory, "detector", status, [box])
    with transaction(factory) as session:
        assert dispatcher._plan(session, session.get_one(Evidence, evidence.id)) == ["reader"]
        assert dispatcher._plan(session, session.get_one(Evidence, evidence.id)) == []  # once
        upstream = dispatcher._upstream(session, evidence.id, "reader")
    if status == "succeeded":
        assert upstream == {"detector": [box]}
    else:
        assert upstream == {}  # a failed requirement is absent, and the dependent still runs


def test_a_requirement_that_does_not_apply_does_not_hold_back(dispatcher: Dispatcher,
                                                              factory: sessionmaker[Session], tmp_path: Path) -> None:
    pdf = tmp_path / "letter.pdf"
    pdf.write_bytes(pdf_bytes())
    evidence = _evidence(factory, pdf)
    with transaction(factory) as session:
        assert dispatcher._plan(session, session.get_one(Evidence, evidence.id)) == ["reader"]


def test_declared_fingerprints_go_only_to_the_analyzers_that_take_prints(factory: sessionmaker[Session],
                                                                        tmp_path: Path) -> None:
    from workers.analyzers import registry

    analyzers = registry.load_all()
    settings = Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    planner = Dispatcher(settings, factory, MemoryObjectStore(), analyzers, actor_factory=lambda name: object())
    photo = _evidence(factory, bus_jpg_path())
    path = tmp_path / "print.jpg"
    path.write_bytes(bus_jpg_path().read_bytes() + b"\x00")  # other content, same type
    with transaction(factory) as session:
        case = records.create_case(session, reference="C-prints", title="t", description="", created_by="t")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        declared = intake.ingest_file(session, MemoryObjectStore(), case=case, path=path, sha256=digest,
                                      size=path.stat().st_size, filename=path.name, declared_media_type=None,
                                      actor="t", declared_kind="fingerprint", declared_ppi=1000.0).evidence
    with transaction(factory) as session:
        planned_print = planner._plan(session, session.get_one(Evidence, declared.id))
        planned_photo = planner._plan(session, session.get_one(Evidence, photo.id))
    assert sorted(planned_print) == ["fingerprints", "hashes", "media_probe"]
    assert {"fingerprints", "objects", "ocr", "hashes"} <= set(planned_photo)
    assert "entities" not in planned_photo and "plates" not in planned_photo  # they wait for ocr / objects
