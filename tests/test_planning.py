"""Analysis planning (`workers.planning`): which analyzers an item gets and when, and a document's page ranges.

Planning is plain Python: these tests call its public functions on plain data, without Ray or a record store;
one test checks the wiring through the dispatcher (on the fake runtime).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import jobs
from storage.fakes import MemoryObjectStore
from storage.settings import Settings
from storage.tables import Finding, Job
from tests.media_samples import bus_jpg_path
from tests.worker_helpers import FakeClock, fake_dispatcher, ingest, new_case, settle
from workers import planning
from workers.analyzers.base import AnalysisLimits, Analyzer, EvidenceFile, FindingData, PageRange
from workers.fakes import FakeRuntime
from workers.planning import analyzers_to_queue, first_range, next_range


class Detector(Analyzer):
    name, version = "detector", "1"
    accepts, produces = frozenset({"image/*"}), frozenset({"test.box"})

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        return [FindingData(kind="test.box", label="bus", confidence=0.9, data={"box": [1, 2, 3, 4]})]


class Reader(Analyzer):
    name, version = "reader", "1"
    accepts, produces = frozenset({"*"}), frozenset({"test.text"})
    requires = ("detector",)

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        boxes = [finding.data["box"] for finding in item.upstream.get("detector", [])]
        return [FindingData(kind="test.text", data={"boxes": boxes})]


ANALYZERS: dict[str, type[Analyzer]] = {"detector": Detector, "reader": Reader}


def _queue(media_type: str, job_states: list[tuple[str, str]], declared_kind: str | None = None) -> list[str]:
    return analyzers_to_queue(ANALYZERS, media_type=media_type, declared_kind=declared_kind, job_states=job_states)


def test_planning_imports_neither_ray_nor_a_database_session() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, workers.planning; "
                               "print(sorted(m for m in ('ray', 'sqlalchemy') if m in sys.modules))"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    assert probe.stdout.strip() == "[]"


def test_terminal_states_are_the_job_queues() -> None:
    assert frozenset(jobs.TERMINAL) == planning.TERMINAL


@pytest.mark.parametrize("requirement_ended", ["succeeded", "failed"])
def test_a_dependent_waits_until_its_requirement_has_ended(requirement_ended: str) -> None:
    assert _queue("image/jpeg", []) == ["detector"]
    for waiting in ("queued", "running"):
        assert _queue("image/jpeg", [("detector", waiting)]) == []
    # A failed requirement still lets the dependent run (without that requirement's findings).
    assert _queue("image/jpeg", [("detector", requirement_ended)]) == ["reader"]
    assert _queue("image/jpeg", [("detector", requirement_ended), ("reader", "queued")]) == []  # once


def test_an_analyzer_read_in_page_ranges_ends_with_its_last_range() -> None:
    assert _queue("image/tiff", [("detector", "succeeded"), ("detector", "queued")]) == []
    assert _queue("image/tiff", [("detector", "succeeded"), ("detector", "running")]) == []
    assert _queue("image/tiff", [("detector", "succeeded"), ("detector", "failed")]) == ["reader"]


def test_a_requirement_that_does_not_apply_does_not_hold_back() -> None:
    assert _queue("application/pdf", []) == ["reader"]  # the detector takes only images


def test_declared_fingerprints_go_only_to_the_analyzers_that_take_prints() -> None:
    from workers.analyzers import registry

    analyzers = registry.load_all()
    planned_print = analyzers_to_queue(analyzers, media_type="image/jpeg", declared_kind="fingerprint", job_states=[])
    planned_photo = analyzers_to_queue(analyzers, media_type="image/jpeg", declared_kind=None, job_states=[])
    assert planned_print == ["fingerprints", "hashes", "media_probe"]
    assert {"fingerprints", "objects", "ocr", "hashes"} <= set(planned_photo)
    assert "entities" not in planned_photo and "plates" not in planned_photo  # they wait for ocr / objects
    ended = [(name, "succeeded") for name in planned_photo]
    later = analyzers_to_queue(analyzers, media_type="image/jpeg", declared_kind=None, job_states=ended)
    assert {"entities", "plates"} <= set(later) and not set(later) & set(planned_photo)


def test_a_long_document_is_read_in_ranges_up_to_its_page_cap() -> None:
    limits = AnalysisLimits(max_pages_per_job=3, max_document_pages=8)
    assert first_range(7, limits) == PageRange(1, 3)
    assert first_range(2, limits) == PageRange(1, 2)
    assert first_range(0, limits) == PageRange(1, 1)
    assert next_range([1, 3], 7, limits) == PageRange(4, 6)
    assert next_range([4, 6], 7, limits) == PageRange(7, 7)
    assert next_range([7, 7], 7, limits) is None
    assert next_range([4, 6], 50, limits) == PageRange(7, 8)  # no further than max_document_pages
    assert next_range([7, 8], 50, limits) is None
    assert next_range(None, 7, limits) is None and next_range([1, 3], None, limits) is None


@pytest.mark.parametrize("requirement_ended", ["succeeded", "failed"])
def test_the_dispatcher_queues_a_dependent_after_its_requirement_with_its_findings(
        factory: sessionmaker[Session], tmp_path: Path, requirement_ended: str) -> None:
    settings = Settings(_env_file=None, home=tmp_path, job_max_attempts=2)  # type: ignore[call-arg]
    store = MemoryObjectStore()
    evidence_id = ingest(factory, store, new_case(factory, "2026-0300"), bus_jpg_path())
    runtime = FakeRuntime()
    if requirement_ended == "failed":
        runtime.script("raise", "raise")  # both attempts of the detector
    settle(fake_dispatcher(settings, factory, store, ANALYZERS, runtime, FakeClock()), factory)

    with factory() as session:
        analysis_jobs = session.scalars(select(Job).where(Job.kind == "analysis").order_by(Job.id)).all()
        [text] = session.scalars(select(Finding).where(Finding.evidence_id == evidence_id,
                                                       Finding.kind == "test.text")).all()
    assert [(job.analyzer, job.state) for job in analysis_jobs] == [("detector", requirement_ended),
                                                                    ("reader", "succeeded")]
    # The detector's finding is handed to the reader as upstream; a failed detector hands nothing.
    assert text.data["boxes"] == ([[1, 2, 3, 4]] if requirement_ended == "succeeded" else [])
