"""Analysis planning: which analyzers an evidence item gets, when, and which pages each job of a document reads.

Plain decisions on plain data (no Ray, no database): the dispatcher reads an item's jobs, asks
`analyzers_to_queue`, and enqueues what it answers. It asks whenever the item is planned and whenever one of
its analyses ends, so an analyzer that depends on another (plates on objects) is queued exactly when it can run,
and the item's cross-matching once nothing is left to run on it (`ready_to_crossmatch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from workers.analyzers.base import Analyzer, PageRange

TERMINAL = frozenset({"succeeded", "failed"})  # job states that end a job (as `storage.jobs.TERMINAL`)


class PageLimits(Protocol):
    """The page limits planning reads (`Settings` and `AnalysisLimits` both carry them)."""

    @property
    def max_pages_per_job(self) -> int: ...

    @property
    def max_document_pages(self) -> int: ...


def ended_analyzers(job_states: Iterable[tuple[str, str]]) -> set[str]:
    """Analyzers all of whose jobs are terminal, from (analyzer, job state) pairs of one item.

    A document read in page ranges has one job per range: its analyzer has ended once every range has.
    """
    states = list(job_states)
    return {name for name, _ in states} - {name for name, state in states if state not in TERMINAL}


def analyzers_to_queue(analyzers: Mapping[str, type[Analyzer]], *, media_type: str, declared_kind: str | None,
                       job_states: Iterable[tuple[str, str]]) -> list[str]:
    """The analyzers to enqueue now for an item, in name order.

    An analyzer is queued when it accepts the item's media type and declared kind, has no job on the item yet,
    and every analyzer it `requires` that also applies to the item has ended (succeeded or failed: a dependent
    still runs without a failed requirement's findings). A requirement that does not apply holds nothing back.
    `job_states` are (analyzer, state) pairs of the item's analysis jobs.
    """
    states = list(job_states)
    ended = ended_analyzers(states)
    started = {name for name, _ in states}
    accepting = {name for name, cls in analyzers.items() if cls.applies_to(media_type, declared_kind)}
    return [name for name in sorted(accepting - started)
            if all(need in ended for need in analyzers[name].requires if need in accepting)]


def ready_to_crossmatch(job_states: Iterable[tuple[str, str]]) -> bool:
    """Whether an item's analysis is over, so its findings can be matched: it has analysis jobs and all have
    ended (succeeded or failed), from (analyzer, job state) pairs of its analysis jobs."""
    states = list(job_states)
    return bool(states) and all(state in TERMINAL for _, state in states)


def first_range(total: int, limits: PageLimits) -> PageRange:
    """The pages the first job of a document reads."""
    return PageRange(1, max(1, min(total, limits.max_pages_per_job, limits.max_document_pages)))


def next_range(pages: list[int] | None, total: int | None, limits: PageLimits) -> PageRange | None:
    """The page range that follows `pages` in a document of `total` pages, if any is left to read."""
    if not pages or not total:
        return None
    first, cap = int(pages[1]) + 1, min(int(total), limits.max_document_pages)
    return PageRange(first, min(cap, first + limits.max_pages_per_job - 1)) if first <= cap else None
