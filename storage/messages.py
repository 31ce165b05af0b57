"""What crosses process boundaries between the dispatcher and its workers, as typed messages.

The dispatcher hands an analyzer actor an `EvidenceMessage` (built from the record store by
`storage.analysis.evidence_message`); the actor answers with a `RunOutcome` whose findings are `ReportedFinding`s,
recorded by `storage.analysis.record_outcome`. The fingerprint matcher answers a request with a `MatchAnswer`.
They live in storage because storage builds and records them, and storage may not import the workers.
Ray pickles them, so bytes stay bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class UpstreamFinding:
    """A recorded finding of an analyzer that another one requires (plates read the vehicles `objects` found)."""

    kind: str
    label: str | None = None
    confidence: float | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvidenceMessage:
    """One evidence item, as the dispatcher hands it to an analyzer actor, which fetches and verifies the file."""

    id: str
    bucket: str
    object_key: str
    version_id: str | None
    sha256: str
    media_type: str
    original_filename: str | None = None
    declared_kind: str | None = None
    declared_ppi: float | None = None
    # The findings of the analyzers this one requires that succeeded, by analyzer name (absent: failed or not run).
    upstream: Mapping[str, Sequence[UpstreamFinding]] = field(default_factory=dict)
    # [first, last]: the page range this job reads (a document read in several jobs); None: the first range.
    pages: list[int] | None = None


@dataclass(frozen=True)
class HeldText:
    """A page's text, held in the full-text search table rather than in the finding."""

    text: str
    page: int = 1
    language: str | None = None
    engine: str = "unknown"


@dataclass(frozen=True)
class HeldTemplate:
    """A fingerprint's ISO/IEC 19794-2 template, held in the matcher's gallery rather than in the finding."""

    iso: bytes
    minutiae: int = 0
    nfiq2: int | None = None


Held = HeldText | HeldTemplate


@dataclass(frozen=True)
class ReportedFinding:
    """One finding an analyzer reported, as recorded: `data` goes to the finding, `held` to its own table."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    confidence: float | None = None
    held: Held | None = None


@dataclass(frozen=True)
class RunOutcome:
    """What one analyzer attempt reported: a success with its findings, or a failure with its reason."""

    analyzer: str
    analyzer_version: str
    status: str  # "succeeded" or "failed"
    error: str | None = None
    retryable: bool = False
    models: dict[str, Any] = field(default_factory=dict)
    findings: Sequence[ReportedFinding] = ()
    worker: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    duration_ms: float | None = None
    recycle: bool = False  # the worker asks to be replaced (over its memory budget, or still large after the job)
    page_count: int | None = None  # pages of the document (paged analyzers)
    pages: list[int] | None = None  # [first, last]: the page range this run read


@dataclass(frozen=True)
class MatchAnswer:
    """The fingerprint matcher's answer to one request: a result, or the reason there is none."""

    result: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class MatchWork:
    """A job for a matcher actor (`workers.matcher_worker`): cross-match an item ("crossmatch"), answer a search
    ("search") or a fingerprint request ("match"), or find the items a register change concerns ("rematch").
    The actor ends the job itself, in the name of `owner` (the dispatcher holding its lease), in the transaction
    that records the work, so a job whose lease was lost records nothing."""

    job_id: int
    kind: str
    owner: str
    evidence_id: str | None
    payload: dict[str, Any]
    attempt: int
    max_attempts: int


@dataclass(frozen=True)
class MatchDone:
    """How a matcher actor ended a job: "succeeded", "failed" (retried later while attempts remain), or "lost"
    (the lease had passed to another dispatcher: nothing was recorded); `summary` says what it did."""

    job_id: int
    state: str
    summary: str = ""
    error: str | None = None
