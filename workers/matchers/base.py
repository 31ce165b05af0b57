"""The matcher contract: what a matcher consumes, and what it proposes for one finding.

A matcher reads findings of the kinds it `consumes` (side A of a match, a `Subject`) and proposes links
(`Proposal`s) to register records or to findings in other evidence. It says by which keys its findings are
found from other evidence (`keys`, indexed in `storage.matches.MatchKey`), so a later item finds this one.
Proposals scoring under the matcher's `threshold` are not recorded. Matching is light database work: matchers
run in the dispatcher process (`workers.crossmatch`), with no model; a matcher that needs one (faces, images)
will run on an actor behind the same contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from storage.matches import FindingSide

Subject = FindingSide  # a recorded finding, as a matcher sees it (side A)


@dataclass(frozen=True)
class Proposal:
    """A link a matcher proposes for a subject: to a register record, or to a finding in other evidence."""

    target_kind: str  # one of storage.matches.TARGET_KINDS
    target_id: str
    score: float
    method: str  # one of storage.matches.METHODS
    detail: dict[str, Any] = field(default_factory=dict)
    target_evidence_id: str | None = None
    target_case_id: str | None = None
    target_analyzer: str = "register"
    target_version: str | None = None


@dataclass(frozen=True)
class Key:
    """A key a finding is found by from other evidence: its own reading (`exact`) or one of its alternatives."""

    key: str
    exact: bool


class Matcher(ABC):
    """Base class of every matcher: declare `name`, `version`, `modality` and `consumes` (finding kinds)."""

    name: ClassVar[str]
    version: ClassVar[str]
    modality: ClassVar[str]  # one of storage.matches.MODALITIES
    consumes: ClassVar[frozenset[str]]
    threshold: float = 0.5  # proposals scoring under this are not recorded (an instance may hold the setting)

    def wants(self, subject: Subject) -> bool:
        """Whether this matcher matches the finding (by default: every finding of a kind it consumes)."""
        return subject.kind in self.consumes

    def keys(self, subject: Subject) -> list[Key]:
        """The keys by which other evidence finds this finding (none by default)."""
        return []

    @abstractmethod
    def propose(self, session: Session, subject: Subject) -> list[Proposal]:
        """The links this finding has now: register records, and findings in other evidence."""
