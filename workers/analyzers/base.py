"""The analyzer contract: what an analyzer accepts, what it produces, and how a run reports back.

An analyzer is loaded once per Ray actor (`load`), then called for one evidence file at a time (`analyze`).
It returns findings, or raises `AnalysisFailed` with a reason an examiner can read (`BadInput` when the file
cannot be decoded); any other exception is recorded as a failed run too, never lost. Each analyzer has a time
and a memory budget per job, and a paged analyzer reads long documents as several page-range jobs.
"""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from storage.messages import Held, UpstreamFinding


class AnalysisFailed(Exception):
    """The evidence could not be analysed, for a reason that is the evidence's, not the code's."""


class BadInput(AnalysisFailed):
    """The evidence file could not be decoded as the type it was sniffed as (corrupt, truncated, hostile)."""


@dataclass(frozen=True)
class PageRange:
    """Pages `first` to `last` of a document, numbered from 1, both included."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not 1 <= self.first <= self.last:
            raise ValueError(f"not a page range: {self.first}-{self.last}")

    def __len__(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class EvidenceFile:
    """A verified local copy of one evidence item, as an analyzer sees it."""

    evidence_id: str
    path: Path
    sha256: str
    size: int
    media_type: str
    filename: str | None = None
    # Findings of the analyzers this one `requires`, by analyzer name (absent when they failed or were not run).
    upstream: Mapping[str, Sequence[UpstreamFinding]] = field(default_factory=dict)
    # What the submitter declared the item to be ("fingerprint", "document", "photo"), and a print's resolution.
    declared_kind: str | None = None
    declared_ppi: float | None = None


@dataclass(frozen=True)
class AnalysisLimits:
    """Resource limits that protect workers from hostile input."""

    max_image_pixels: int = 120_000_000
    max_pages_per_job: int = 20
    max_document_pages: int = 2000
    # The pages this job reads (paged analyzers); None: the analyzer's own single-pass limit applies.
    pages: PageRange | None = None


@dataclass(frozen=True)
class Artifact:
    """A derived file (thumbnail, crop) that the worker stores in the derived-artifacts bucket."""

    name: str
    content_type: str
    data: bytes


@dataclass
class FindingData:
    """One result of an analyzer, before it is recorded."""

    kind: str
    data: dict[str, Any]
    label: str | None = None
    confidence: float | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    # Material recorded in its own table rather than in `data`: page text for search, a fingerprint template.
    held: Held | None = None

    def as_upstream(self) -> UpstreamFinding:
        """This finding as an analyzer that requires this one would receive it once recorded (without artifacts)."""
        return UpstreamFinding(kind=self.kind, label=self.label, confidence=self.confidence, data=dict(self.data))


EVERY_KIND: frozenset[str | None] = frozenset({None, "photo", "document", "fingerprint"})
WSQ_MEDIA_TYPE = "image/x-wsq"  # the FBI's fingerprint format: a WSQ file is a print, declared or not


def evidence_kind(media_type: str, declared_kind: str | None) -> str | None:
    """What an item is for routing: what was declared, else "fingerprint" for WSQ files, else unknown (None)."""
    if declared_kind is None and media_type == WSQ_MEDIA_TYPE:
        return "fingerprint"
    return declared_kind


class Analyzer(ABC):
    """Base class of every analyzer: declare `name`, `version`, `accepts` (MIME patterns) and `produces`."""

    name: ClassVar[str]
    version: ClassVar[str]
    accepts: ClassVar[frozenset[str]]
    produces: ClassVar[frozenset[str]]
    # Keys of its findings' data (at any depth) that the API withholds from roles without biometric access:
    # embeddings, minutiae. The API's own list must match the union of these (tests/test_sensitive_fields.py).
    sensitive_fields: ClassVar[frozenset[str]] = frozenset()
    num_cpus: ClassVar[float] = 0.25
    # Analyzers whose findings this one reuses (e.g. plates look inside the vehicles `objects` found). It runs
    # once they have ended, succeeded or failed, and must still work when their findings are missing.
    requires: ClassVar[tuple[str, ...]] = ()
    # The declared evidence kinds this analyzer runs on (None: nothing declared). Items declared fingerprints go
    # only to the analyzers that list "fingerprint": looking for cars or text on a print is wasted work.
    runs_on: ClassVar[frozenset[str | None]] = frozenset({None, "photo", "document"})
    # Budgets of one job (settings `analyzer_time_budgets` and `analyzer_memory_budgets` override them): wall-clock
    # seconds, and MiB the job may add to what the worker holds once loaded.
    time_budget_seconds: ClassVar[float] = 300.0
    memory_budget_mb: ClassVar[float] = 3072.0
    # A paged analyzer reads documents in page ranges of at most `max_pages_per_job` pages, one job each.
    paged: ClassVar[bool] = False

    def load(self) -> None:  # noqa: B027 - optional hook; model-backed analyzers override it
        """Load models and warm up; called once per worker, never in a request path."""

    def provenance(self) -> dict[str, Any]:
        """What a court needs to reproduce a result: the models (name, version, weights sha256, licence)."""
        return {}

    def page_count(self, item: EvidenceFile, limits: AnalysisLimits) -> int:
        """The number of pages of `item` (paged analyzers); raise `BadInput` when it cannot be read."""
        return 1

    @classmethod
    def accepts_media(cls, media_type: str) -> bool:
        return any(fnmatch.fnmatchcase(media_type, pattern) for pattern in cls.accepts)

    @classmethod
    def applies_to(cls, media_type: str, declared_kind: str | None) -> bool:
        """Whether this analyzer runs on an item of this media type and declared kind."""
        return evidence_kind(media_type, declared_kind) in cls.runs_on and cls.accepts_media(media_type)

    @abstractmethod
    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        """Findings about `item`; raise `AnalysisFailed` with a clear reason when it cannot be analysed."""
