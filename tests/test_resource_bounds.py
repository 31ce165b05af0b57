"""Resource bounds of analysis jobs: memory and time budgets, page-range jobs.

Most tests run the real dispatcher and real analyzer workers in this process (`LocalRuntime`); the time budget
needs a process that can be killed, and runs on a local Ray. The dispatcher's side of the bounds (budgets
overrun, workers replaced or lost mid-job, `worker_max_losses`) is tested on the fake runtime in
test_dispatcher_fake.py.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import psutil
import pytest
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from tests.media_samples import text_layer_pdf
from tests.worker_helpers import findings_of, ingest, jobs_of, new_case, runs_of, step_until_settled
from workers.actor import AnalyzerWorker
from workers.analyzers.base import AnalysisLimits, Analyzer, EvidenceFile, FindingData, PageRange
from workers.analyzers.entities import EntitiesAnalyzer
from workers.analyzers.ocr import DOCUMENT_KIND, PAGE_KIND, OcrAnalyzer
from workers.dispatcher import Dispatcher
from workers.guard import MemoryBudgetExceeded, MemoryGuard, rss_mb
from workers.runtime import LocalRuntime, RayRuntime, init_ray

pytestmark = pytest.mark.timeout(400)
CHUNK = 16 * 1024 * 1024


def _grow(megabytes: int, held: list[np.ndarray]) -> None:
    """Allocate and touch memory, 16 MiB at a time, keeping it in `held`."""
    for _ in range(megabytes // 16):
        held.append(np.ones(CHUNK, dtype=np.uint8))


def _photo(path: Path, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "PNG")
    return path


class Hungry(Analyzer):
    """Uses memory as its item's name says: 'hog' grows without end, 'leak' keeps 320 MiB after the job."""

    name, version = "hungry", "1"
    accepts, produces = frozenset({"image/*"}), frozenset({"test.memory"})

    def __init__(self) -> None:
        self.kept: list[np.ndarray] = []

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        held: list[np.ndarray] = []
        if "hog" in (item.filename or ""):
            try:
                _grow(64 * 1024, held)
            except Exception:  # an analyzer's own catch-all must not hide the budget
                return []
        if "leak" in (item.filename or ""):
            _grow(208, self.kept)
        return [FindingData(kind="test.memory", data={"mb": round(rss_mb())})]


def test_the_memory_guard_stops_a_job_past_its_budget() -> None:
    guard = MemoryGuard(rss_mb() + 160)
    held: list[np.ndarray] = []
    with pytest.raises(MemoryBudgetExceeded), guard.watch():
        try:
            _grow(8 * 1024, held)  # 8 GiB, were it not stopped
        except Exception:
            pytest.fail("the budget was caught as an ordinary exception")
    assert 160 <= len(held) * 16 < 1024  # stopped soon after the budget, far from the 8 GiB asked for
    held.clear()
    with guard.watch():  # a job within the budget runs to its end; nothing is left pending afterwards
        _grow(64, held)
    assert len(held) == 4 and guard.peak_mb < guard.limit_mb


def test_memory_budget_fails_the_run_and_workers_that_stay_large_are_replaced(
        settings: Settings, factory: sessionmaker[Session], s3_store: S3ObjectStore, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"analyzer_memory_budgets": {"hungry": 256.0}, "worker_recycle_mb": 128.0})
    case = new_case(factory, "2026-0910")
    hog = ingest(factory, s3_store, case, _photo(tmp_path / "hog.png", 1))
    calm = ingest(factory, s3_store, case, _photo(tmp_path / "calm.png", 2))
    dispatcher = Dispatcher(settings, factory, s3_store, {"hungry": Hungry}, runtime=LocalRuntime(),
                            actor_factory=lambda name: AnalyzerWorker(name, settings, analyzer=Hungry()))
    first_worker = dispatcher.pools["hungry"][0]
    step_until_settled(dispatcher, factory)

    [run] = runs_of(factory, hog, "hungry")
    assert run.status == "failed" and "exceeded its memory budget of 256 MiB" in (run.error or "")
    assert [job.state for job in jobs_of(factory, hog, "hungry")] == ["failed"]  # not retried
    assert [r.status for r in runs_of(factory, calm, "hungry")] == ["succeeded"]
    second_worker = dispatcher.pools["hungry"][0]
    assert second_worker is not first_worker  # the worker over its budget was replaced

    leak = ingest(factory, s3_store, case, _photo(tmp_path / "leak.png", 3))
    step_until_settled(dispatcher, factory)
    assert [r.status for r in runs_of(factory, leak, "hungry")] == ["succeeded"]
    assert dispatcher.pools["hungry"][0] is not second_worker  # still 208 MiB larger after the job: replaced


@pytest.fixture(scope="module")
def readers() -> dict[str, Analyzer]:
    loaded: dict[str, Analyzer] = {"ocr": OcrAnalyzer(), "entities": EntitiesAnalyzer()}
    for analyzer in loaded.values():
        analyzer.load()
    return loaded


def _long_document(pages: int) -> bytes:
    lines = [[f"Proces-verbaal blad {number} van het dossier 2026/{100 + number}.",
              f"Getuige nummer {number} verklaarde op {number} maart dat niets werd gezien."] for number in
             range(1, pages + 1)]
    lines[-1].append("Contact: onderzoek.laatste@example.be")
    return text_layer_pdf(lines)


def _comparable(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key != "artifacts"}


def test_long_documents_are_read_in_page_ranges_that_add_up_to_one_pass(
        readers: dict[str, Analyzer], settings: Settings, factory: sessionmaker[Session], s3_store: S3ObjectStore,
        tmp_path: Path) -> None:
    settings = settings.model_copy(update={"max_pages_per_job": 3})
    case = new_case(factory, "2026-0920")
    (tmp_path / "long.pdf").write_bytes(_long_document(7))
    (tmp_path / "short.pdf").write_bytes(_long_document(1))
    long = ingest(factory, s3_store, case, tmp_path / "long.pdf")
    short = ingest(factory, s3_store, case, tmp_path / "short.pdf")
    dispatcher = Dispatcher(settings, factory, s3_store, {"ocr": OcrAnalyzer, "entities": EntitiesAnalyzer},
                            runtime=LocalRuntime(),
                            actor_factory=lambda name: AnalyzerWorker(name, settings, analyzer=readers[name]))
    step_until_settled(dispatcher, factory)

    ocr_jobs = jobs_of(factory, long, "ocr")
    assert [job.payload.get("pages") for job in ocr_jobs] == [None, [4, 6], [7, 7]]
    runs = runs_of(factory, long, "ocr")
    assert [run.status for run in runs] == ["succeeded"] * 3  # each range a run
    # Other items are not held up behind the whole document: the short one was read between its ranges.
    [short_run] = runs_of(factory, short, "ocr")
    assert runs[0].finished_at < short_run.finished_at < runs[-1].finished_at

    item = EvidenceFile(evidence_id="x", path=tmp_path / "long.pdf", sha256="", size=1,
                        media_type="application/pdf")
    one_pass = readers["ocr"].analyze(item, AnalysisLimits())
    found = findings_of(factory, long, "ocr")
    by_page = sorted((f.data for f in found if f.kind == PAGE_KIND), key=lambda data: data["page"])
    expected = sorted((f.data for f in one_pass if f.kind == PAGE_KIND), key=lambda data: data["page"])
    assert [_comparable(data) for data in by_page] == [_comparable(data) for data in expected]
    summaries = sorted((f.data for f in found if f.kind == DOCUMENT_KIND), key=lambda data: data["first_page"])
    [whole] = [f.data for f in one_pass if f.kind == DOCUMENT_KIND]
    assert [(s["first_page"], s["last_page"]) for s in summaries] == [(1, 3), (4, 6), (7, 7)]
    for key in ("pages_read", "pages_with_text", "characters", "pages_skipped"):
        assert sum(summary[key] for summary in summaries) == whole[key], key
    assert all(summary["pages"] == whole["pages"] == 7 for summary in summaries)

    # The entities analyzer ran once every range had ended, on all of them: the address is on the last page.
    [entities_job] = jobs_of(factory, long, "entities")
    assert entities_job.id > ocr_jobs[-1].id and entities_job.state == "succeeded"
    emails = [f for f in findings_of(factory, long, "entities") if f.kind == "entity.email"]
    assert [(f.label, f.data["page"]) for f in emails] == [("onderzoek.laatste@example.be", 7)]


def test_tiff_page_ranges_are_read_with_their_page_numbers(readers: dict[str, Analyzer], tmp_path: Path) -> None:
    pages = [Image.new("L", (400, 300), shade) for shade in (255, 250, 245)]
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    (tmp_path / "scan.tif").write_bytes(buffer.getvalue())
    item = EvidenceFile(evidence_id="t", path=tmp_path / "scan.tif", sha256="", size=1, media_type="image/tiff")
    assert readers["ocr"].page_count(item, AnalysisLimits()) == 3
    findings = readers["ocr"].analyze(item, AnalysisLimits(pages=PageRange(2, 3)))
    assert sorted(f.data["page"] for f in findings if f.kind == PAGE_KIND) == [2, 3]
    [summary] = [f.data for f in findings if f.kind == DOCUMENT_KIND]
    assert (summary["pages"], summary["first_page"], summary["last_page"], summary["pages_read"]) == (3, 2, 3, 2)


# -- on a real Ray: a job past its time budget --------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    init_ray(Settings(_env_file=None, ray_num_cpus=2))  # type: ignore[call-arg]
    yield
    RayRuntime().shutdown()


class Sleeper(Analyzer):
    """Never returns on an item named 'hang' (as a decoder stuck in a loop would); answers at once otherwise."""

    name, version = "sleeper", "1"
    accepts, produces = frozenset({"image/*"}), frozenset({"test.pid"})
    num_cpus: ClassVar[float] = 0.25

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        if "hang" in (item.filename or ""):
            threading.Event().wait()
        return [FindingData(kind="test.pid", data={"pid": os.getpid()})]


def _wait_gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.2)
    return False


def test_a_job_past_its_time_budget_is_stopped_and_its_worker_replaced(
        ray_cluster: None, settings: Settings, factory: sessionmaker[Session], s3_store: S3ObjectStore,
        tmp_path: Path) -> None:
    settings = settings.model_copy(update={"analyzer_time_budgets": {"sleeper": 4.0}})
    runtime = RayRuntime()
    dispatcher = Dispatcher(settings, factory, s3_store, {"sleeper": Sleeper}, runtime=runtime,
                            actor_factory=lambda name: runtime.spawn(AnalyzerWorker, name, settings, num_cpus=0.25,
                                                                     analyzer=Sleeper()))
    dispatcher.warm_up(timeout=120)
    first_pid = int(runtime.result(runtime.call(dispatcher.pools["sleeper"][0], "ping")).split(":")[1])
    case = new_case(factory, "2026-0930")
    hung = ingest(factory, s3_store, case, _photo(tmp_path / "hang.png", 4))
    after = ingest(factory, s3_store, case, _photo(tmp_path / "after.png", 5))
    step_until_settled(dispatcher, factory, timeout=180)

    [run] = runs_of(factory, hung, "sleeper")
    assert run.status == "failed" and "exceeded its time budget of 4 s" in (run.error or "")
    [job] = jobs_of(factory, hung, "sleeper")
    assert (job.state, job.attempts) == ("failed", 1)
    assert _wait_gone(first_pid)  # the stuck worker process was ended, not left running
    # The item queued behind it on the same worker ran on the fresh one; that wait cost it no attempt.
    after_runs = runs_of(factory, after, "sleeper")
    assert after_runs[-1].status == "succeeded" and all("replaced" in (r.error or "") for r in after_runs[:-1])
    [finding] = findings_of(factory, after, "sleeper")
    assert finding.data["pid"] != first_pid
    [after_job] = jobs_of(factory, after, "sleeper")
    assert after_job.attempts - after_job.payload.get("worker_losses", 0) == 1
