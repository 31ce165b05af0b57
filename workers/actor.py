"""The analyzer actor: one per analyzer (or a pool), loading its models once in `__init__`.

Each job runs under the analyzer's memory budget (`workers.guard`); a file a decoder cannot read is a failed
run that is not retried (`workers.badinput`); a worker past its budget, or that stays large after a job, asks
the dispatcher to replace it (`RunOutcome.recycle`). A paged analyzer reads one page range per job.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import socket
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from storage.analysis import RunOutcome
from storage.objectstore import IntegrityError, ObjectStoreError, S3ObjectStore
from storage.settings import Settings
from workers.analyzers import registry
from workers.analyzers.base import AnalysisFailed, AnalysisLimits, Analyzer, EvidenceFile, FindingData, PageRange
from workers.badinput import as_bad_input
from workers.guard import MemoryBudgetExceeded, MemoryGuard, release_free_memory, rss_mb


def memory_budget_mb(settings: Settings, analyzer: type[Analyzer]) -> float:
    """MiB one job of `analyzer` may add to its loaded worker (the setting, else the analyzer's default)."""
    return settings.analyzer_memory_budgets.get(analyzer.name, analyzer.memory_budget_mb)


def time_budget_seconds(settings: Settings, analyzer: type[Analyzer]) -> float:
    """Wall-clock seconds one job of `analyzer` may run (the setting, else the analyzer's default)."""
    return settings.analyzer_time_budgets.get(analyzer.name, analyzer.time_budget_seconds)


def first_range(total: int, limits: AnalysisLimits) -> PageRange:
    """The pages the first job of a document reads."""
    return PageRange(1, max(1, min(total, limits.max_pages_per_job, limits.max_document_pages)))


def next_range(pages: list[int] | None, total: int | None, settings: Settings) -> PageRange | None:
    """The page range that follows `pages` in a document of `total` pages, if any is left to read."""
    if not pages or not total:
        return None
    first, cap = int(pages[1]) + 1, min(int(total), settings.max_document_pages)
    return PageRange(first, min(cap, first + settings.max_pages_per_job - 1)) if first <= cap else None


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

    def run(self, evidence: dict[str, Any]) -> dict[str, Any]:
        """Analyse one evidence item; always returns a RunOutcome (as a dict), never raises."""
        started = dt.datetime.now(dt.UTC)
        clock = time.perf_counter()
        analyzer = self.analyzer
        outcome = RunOutcome(analyzer=analyzer.name, analyzer_version=analyzer.version, status="failed",
                             worker=self.identity, started_at=started)
        try:
            outcome.models = analyzer.provenance()
            with tempfile.TemporaryDirectory(prefix="locard-") as tmp:
                item = self._fetch(evidence, Path(tmp))
                try:
                    with self.guard.watch():
                        limits = self._limits_for(item, evidence.get("pages"), outcome)
                        findings = analyzer.analyze(item, limits)
                except (AnalysisFailed, MemoryBudgetExceeded, MemoryError):
                    raise
                except Exception as exc:
                    bad = as_bad_input(exc, item.media_type)
                    if bad is None:
                        raise
                    raise bad from exc
                outcome.findings = [self._store_artifacts(evidence["id"], finding) for finding in findings]
            outcome.status = "succeeded"
        except MemoryBudgetExceeded:
            outcome.error = (f"the analyzer exceeded its memory budget of {self.budget_mb:.0f} MiB on this item "
                             f"(the worker reached {self.guard.peak_mb:.0f} MiB, {self.loaded_mb:.0f} MiB when "
                             "idle); the worker is replaced")
            outcome.recycle = True
        except AnalysisFailed as exc:
            outcome.error = str(exc)
        except IntegrityError as exc:
            outcome.error = f"integrity check failed: {exc}"
        except ObjectStoreError as exc:
            outcome.error = f"object store: {exc}"
            outcome.retryable = True
        except MemoryError:
            outcome.error = "the analyzer ran out of memory on this item"
            outcome.recycle = True
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
            outcome.error = f"{type(exc).__name__}: {exc}{where}"
            outcome.retryable = True
        outcome.finished_at = dt.datetime.now(dt.UTC)
        outcome.duration_ms = round((time.perf_counter() - clock) * 1000, 2)
        if release_free_memory() - self.loaded_mb > self.settings.worker_recycle_mb:
            outcome.recycle = True  # memory that stays after the job: a fresh worker gives it back
        return asdict(outcome)

    def _limits_for(self, item: EvidenceFile, pages: list[int] | None, outcome: RunOutcome) -> AnalysisLimits:
        """The limits of this job; for a paged analyzer, the page range it reads (reported in the outcome)."""
        if not self.analyzer.paged:
            return self.limits
        total = self.analyzer.page_count(item, self.limits)
        selected = PageRange(pages[0], pages[1]) if pages else first_range(total, self.limits)
        outcome.page_count, outcome.pages = total, [selected.first, selected.last]
        return dataclasses.replace(self.limits, pages=selected)

    def memory_mb(self) -> float:
        """The worker's resident memory now (MiB)."""
        return rss_mb()

    def _fetch(self, evidence: dict[str, Any], workdir: Path) -> EvidenceFile:
        path = workdir / "evidence"
        self.store.download(evidence["bucket"], evidence["object_key"], evidence["version_id"] or "", path,
                            expected_sha256=evidence["sha256"])
        return EvidenceFile(evidence_id=evidence["id"], path=path, sha256=evidence["sha256"],
                            size=path.stat().st_size, media_type=evidence["media_type"],
                            filename=evidence.get("original_filename"), upstream=evidence.get("upstream") or {},
                            declared_kind=evidence.get("declared_kind"), declared_ppi=evidence.get("declared_ppi"))

    def _store_artifacts(self, evidence_id: str, finding: FindingData) -> dict[str, Any]:
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
        return {"kind": finding.kind, "label": finding.label, "confidence": finding.confidence, "data": data}
