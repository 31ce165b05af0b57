"""The analyzer actor: one per analyzer (or a pool), loading its models once in `__init__`.

Each job runs under the analyzer's memory budget (`workers.guard`); a file a decoder cannot read is a failed
run that is not retried (`workers.badinput`); a worker past its budget, or that stays large after a job, asks
the dispatcher to replace it (`RunOutcome.recycle`). A paged analyzer reads one page range per job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

from storage.messages import EvidenceMessage, ReportedFinding, RunOutcome
from storage.objectstore import IntegrityError, ObjectStoreError, S3ObjectStore
from storage.settings import Settings
from workers.analyzers import registry
from workers.analyzers.base import AnalysisFailed, AnalysisLimits, Analyzer, EvidenceFile, FindingData, PageRange
from workers.badinput import as_bad_input
from workers.guard import MemoryBudgetExceeded, MemoryGuard, release_free_memory, rss_mb
from workers.planning import first_range


def memory_budget_mb(settings: Settings, analyzer: type[Analyzer]) -> float:
    """MiB one job of `analyzer` may add to its loaded worker (the setting, else the analyzer's default)."""
    return settings.analyzer_memory_budgets.get(analyzer.name, analyzer.memory_budget_mb)


def time_budget_seconds(settings: Settings, analyzer: type[Analyzer]) -> float:
    """Wall-clock seconds one job of `analyzer` may run (the setting, else the analyzer's default)."""
    return settings.analyzer_time_budgets.get(analyzer.name, analyzer.time_budget_seconds)


class AnalyzerWorker:
    """Runs one analyzer on evidence items fetched (and verified) from the object store."""

    def __init__(self, analyzer_name: str, settings: Settings, *, analyzer: Analyzer | None = None) -> None:
        self.settings = settings
        self.analyzer: Analyzer = analyzer or registry.select([analyzer_name])[analyzer_name]()
        self.analyzer.load()
        self.store = S3ObjectStore.from_settings(settings)
        self.limits = AnalysisLimits(max_image_pixels=settings.max_image_pixels,
                                     max_pages_per_job=settings.max_pages_per_job,
                                     max_document_pages=settings.max_document_pages)
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{analyzer_name}"
        self.loaded_mb = release_free_memory()  # what the worker holds with its models loaded, before any job
        self.budget_mb = memory_budget_mb(settings, type(self.analyzer))
        self.guard = MemoryGuard(self.loaded_mb + self.budget_mb)

    def ping(self) -> str:
        return self.identity

    def run(self, evidence: EvidenceMessage) -> RunOutcome:
        """Analyse one evidence item; always returns a RunOutcome, never raises."""
        started = dt.datetime.now(dt.UTC)
        clock = time.perf_counter()
        analyzer = self.analyzer
        outcome = RunOutcome(analyzer=analyzer.name, analyzer_version=analyzer.version, status="failed",
                             worker=self.identity, started_at=started)
        try:
            outcome = replace(outcome, models=analyzer.provenance())
            with tempfile.TemporaryDirectory(prefix="locard-") as tmp:
                item = self._fetch(evidence, Path(tmp))
                try:
                    with self.guard.watch():
                        limits, outcome = self._limits_for(item, evidence.pages, outcome)
                        findings = analyzer.analyze(item, limits)
                except (AnalysisFailed, MemoryBudgetExceeded, MemoryError):
                    raise
                except Exception as exc:
                    bad = as_bad_input(exc, item.media_type)
                    if bad is None:
                        raise
                    raise bad from exc
                reported = [self._store_artifacts(evidence.id, finding) for finding in findings]
            outcome = replace(outcome, status="succeeded", findings=reported)
        except MemoryBudgetExceeded:
            outcome = replace(outcome, recycle=True, error=(
                f"the analyzer exceeded its memory budget of {self.budget_mb:.0f} MiB on this item (the worker "
                f"reached {self.guard.peak_mb:.0f} MiB, {self.loaded_mb:.0f} MiB when idle); the worker is replaced"))
        except AnalysisFailed as exc:
            outcome = replace(outcome, error=str(exc))
        except IntegrityError as exc:
            outcome = replace(outcome, error=f"integrity check failed: {exc}")
        except ObjectStoreError as exc:
            outcome = replace(outcome, error=f"object store: {exc}", retryable=True)
        except MemoryError:
            outcome = replace(outcome, error="the analyzer ran out of memory on this item", recycle=True)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
            outcome = replace(outcome, error=f"{type(exc).__name__}: {exc}{where}", retryable=True)
        # Memory that stays after the job asks for a recycle too: a fresh worker gives it back.
        grown = release_free_memory() - self.loaded_mb > self.settings.worker_recycle_mb
        return replace(outcome, finished_at=dt.datetime.now(dt.UTC), recycle=outcome.recycle or grown,
                       duration_ms=round((time.perf_counter() - clock) * 1000, 2))

    def _limits_for(self, item: EvidenceFile, pages: list[int] | None,
                    outcome: RunOutcome) -> tuple[AnalysisLimits, RunOutcome]:
        """The limits of this job; for a paged analyzer, the page range it reads (reported in the outcome)."""
        if not self.analyzer.paged:
            return self.limits, outcome
        total = self.analyzer.page_count(item, self.limits)
        selected = PageRange(pages[0], pages[1]) if pages else first_range(total, self.limits)
        return (replace(self.limits, pages=selected),
                replace(outcome, page_count=total, pages=[selected.first, selected.last]))

    def memory_mb(self) -> float:
        """The worker's resident memory now (MiB)."""
        return rss_mb()

    def _fetch(self, evidence: EvidenceMessage, workdir: Path) -> EvidenceFile:
        path = workdir / "evidence"
        self.store.download(evidence.bucket, evidence.object_key, evidence.version_id or "", path,
                            expected_sha256=evidence.sha256)
        return EvidenceFile(evidence_id=evidence.id, path=path, sha256=evidence.sha256, size=path.stat().st_size,
                            media_type=evidence.media_type, filename=evidence.original_filename,
                            upstream=evidence.upstream, declared_kind=evidence.declared_kind,
                            declared_ppi=evidence.declared_ppi)

    def _store_artifacts(self, evidence_id: str, finding: FindingData) -> ReportedFinding:
        """The finding as reported, its artifacts stored in the derived bucket and listed in its data."""
        data = dict(finding.data)
        if finding.artifacts:
            stored = []
            for artifact in finding.artifacts:
                key = f"evidence/{evidence_id}/{self.analyzer.name}/{artifact.name}"
                obj = self.store.put_derived(key, artifact.data, content_type=artifact.content_type)
                stored.append({"name": artifact.name, "bucket": obj.bucket, "key": obj.key,
                               "version_id": obj.version_id, "size": obj.size,
                               "sha256": hashlib.sha256(artifact.data).hexdigest(),
                               "content_type": artifact.content_type})
            data["artifacts"] = stored
        return ReportedFinding(kind=finding.kind, label=finding.label, confidence=finding.confidence, data=data,
                               held=finding.held)
