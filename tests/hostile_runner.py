"""Runs a file through every analyzer the planner would give it, as the workers do, measuring each run.

Analyzers are chosen by the dispatcher's planner (`workers.planning.analyzers_to_queue` on the type sniffed
from content and the declared kind), in the waves it queues them, required analyzers first, and each gets its
requirements' findings as `upstream` when they succeeded. Each run's wall time and peak resident memory above
what the process held before it are recorded (Linux: the peak is reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import hashlib
import json
import re
import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path

from storage.media import SNIFF_BYTES, sniff_media_type
from storage.messages import UpstreamFinding
from workers.analyzers import registry
from workers.analyzers.base import (
    AnalysisFailed,
    AnalysisLimits,
    Analyzer,
    EvidenceFile,
    FindingData,
    PageRange,
)
from workers.planning import analyzers_to_queue, first_range, next_range


@dataclass(frozen=True)
class Outcome:
    """One analyzer's run on one file: "succeeded", "refused" (AnalysisFailed and its subclasses) or "error"."""

    analyzer: str
    status: str
    detail: str
    seconds: float  # wall clock
    peak_mb: float  # peak resident memory during the run, above the memory held before it
    findings: int
    cpu_seconds: float = 0.0  # CPU time of this process and the tools it ran (Tesseract): the work, whatever the load


def load_analyzers(names: list[str] | None = None) -> dict[str, Analyzer]:
    """Every registered analyzer (or those named), instantiated and loaded once."""
    loaded = {}
    for name, cls in sorted(registry.select(names).items()):
        analyzer = cls()
        analyzer.load()
        loaded[name] = analyzer
    return loaded


def evidence_for(path: Path, *, filename: str | None = None, declared_kind: str | None = None) -> EvidenceFile:
    """The EvidenceFile production builds: SHA-256 and media type from the content, never from the name."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
        digest.update(head)
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return EvidenceFile(evidence_id=path.name, path=path, sha256=digest.hexdigest(), size=path.stat().st_size,
                        media_type=sniff_media_type(head), filename=filename or path.name,
                        declared_kind=declared_kind)


def planned(analyzers: dict[str, Analyzer], item: EvidenceFile) -> list[str]:
    """The analyzers the planner runs on `item`, in the waves it queues them (required analyzers first)."""
    classes = {name: type(analyzer) for name, analyzer in analyzers.items()}
    states: list[tuple[str, str]] = []
    while wave := analyzers_to_queue(classes, media_type=item.media_type, declared_kind=item.declared_kind,
                                     job_states=states):
        states += [(name, "succeeded") for name in wave]
    return [name for name, _ in states]


def _cpu_seconds() -> float:
    """User and system CPU time of this process and of its finished child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _resident_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        found = re.search(r"VmRSS:\s+(\d+)", status.read())
    return int(found.group(1)) if found else 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")  # resets the resident-memory high-water mark (VmHWM)
        return True
    except OSError:
        return False


def _peak_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        found = re.search(r"VmHWM:\s+(\d+)", status.read())
    return int(found.group(1)) if found else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_file(analyzers: dict[str, Analyzer], item: EvidenceFile, limits: AnalysisLimits) -> list[Outcome]:
    """Every planned analyzer's outcome on `item`. A paged analyzer reads the item in page-range jobs, as the
    dispatcher queues them (`workers.planning`): its outcome is the worst job's (time, CPU, memory; the first
    that did not succeed), with the findings of all, since the budgets hold per job."""
    outcomes = []
    upstream: dict[str, list[UpstreamFinding]] = {}
    for name in planned(analyzers, item):
        analyzer = analyzers[name]
        needs = {need: upstream[need] for need in type(analyzer).requires if need in upstream}
        given = EvidenceFile(**{**item.__dict__, "upstream": needs})
        jobs: list[Outcome] = []
        findings: list[FindingData] = []
        pages: PageRange | None = None
        while True:
            outcome, found, total, pages = _job(analyzer, given, limits, pages)
            jobs.append(outcome)
            findings += found
            following = next_range([pages.first, pages.last], total, limits) if pages is not None else None
            if outcome.status != "succeeded" or following is None:
                break
            pages = following
        failed = next((job for job in jobs if job.status != "succeeded"), None)
        if failed is None:
            upstream[name] = [finding.as_upstream() for finding in findings]
        outcomes.append(Outcome(name, failed.status if failed else "succeeded", failed.detail if failed else "",
                                max(job.seconds for job in jobs), max(job.peak_mb for job in jobs), len(findings),
                                max(job.cpu_seconds for job in jobs)))
    return outcomes


def _job(analyzer: Analyzer, given: EvidenceFile, limits: AnalysisLimits,
         pages: PageRange | None) -> tuple[Outcome, list[FindingData], int | None, PageRange | None]:
    """One job of `analyzer` on `given` (of a paged analyzer: the range `pages`, the first when None, counted
    inside the job as the actor counts it); its outcome, findings, the page count and the range read."""
    _reset_peak()
    before = _resident_kb()
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    findings: list[FindingData] = []
    total: int | None = None
    try:
        job_limits = limits
        if analyzer.paged:
            total = analyzer.page_count(given, limits)
            pages = pages or first_range(total, limits)
            job_limits = replace(limits, pages=pages)
        findings = analyzer.analyze(given, job_limits)
        json.dumps([finding.data for finding in findings], allow_nan=False)  # what the record store needs
        status, detail = "succeeded", ""
    except AnalysisFailed as exc:
        status, detail = "refused", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # recorded, and the test fails on it
        status, detail = "error", f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
    peak = max(0, _peak_kb() - before) / 1024
    return (Outcome(analyzer.name, status, detail[:300], round(seconds, 3), round(peak, 1), len(findings),
                    round(cpu, 3)), findings, total, pages if analyzer.paged else None)
