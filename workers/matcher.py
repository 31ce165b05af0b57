"""The fingerprint matcher: a Ray actor holding every template in a gallery index, for 1:1 and 1:N requests.

The gallery is read from the record store when the actor starts and caught up (new templates only) before each
request, so a print analysed a moment ago is already searchable. A template whose evidence was analysed again
disappears from the record store; a search that meets one drops it from the index. Scores are Bozorth3's;
`threshold` (LOCARD_FINGERPRINT_MATCH_THRESHOLD, 40 by default, NIST's customary guidance) only labels a result
"probable match" for the examiner, who decides.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from models.fingerprint_index import FingerprintIndex
from storage import matching
from storage.db import make_engine, reading, session_factory
from storage.messages import MatchAnswer
from storage.settings import Settings
from storage.tables import MatchRequest

REFRESH_BATCH = 10_000


class MatchFailed(Exception):
    """A request that cannot be answered (a template vanished): recorded as a failed request with the reason."""


class FingerprintMatcher:
    """One gallery index per actor; `run` answers one match request and never raises."""

    def __init__(self, settings: Settings, *, factory: sessionmaker[Session] | None = None) -> None:
        self.settings = settings
        self.factory = factory if factory is not None else session_factory(
            make_engine(settings.effective_database_url), chain_key=settings.chain_key)
        self.index = FingerprintIndex()
        self.watermark = 0
        self.evidence_of: dict[str, str] = {}
        self.identity = f"{socket.gethostname()}:{os.getpid()}:fingerprint-matcher"
        self.refresh()

    def ping(self) -> str:
        return self.identity

    def refresh(self) -> int:
        """Add the templates recorded since the last refresh; returns how many."""
        added = 0
        with reading(self.factory) as session:
            while batch := matching.templates_after(session, after_id=self.watermark, limit=REFRESH_BATCH):
                for template in batch:
                    self.index.add(str(template.id), template.iso)
                    self.evidence_of[str(template.id)] = template.evidence_id
                self.watermark = batch[-1].id
                added += len(batch)
        return added

    def gallery_size(self) -> int:
        return len(self.index)

    def run(self, request_id: str) -> MatchAnswer:
        """Answer one request: a result, or the reason there is none."""
        try:
            with reading(self.factory) as session:
                request = session.get(MatchRequest, request_id)
                if request is None:
                    return MatchAnswer(error=f"match request {request_id} does not exist")
                kind, probe, candidate = request.kind, request.probe_evidence_id, request.candidate_evidence_id
                parameters = dict(request.parameters)
            if kind == matching.VERIFICATION and candidate is not None:
                return MatchAnswer(result=self.verify(probe, candidate))
            return MatchAnswer(result=self.search(probe, limit=int(parameters.get("limit", 20)),
                                                  case_ids=parameters.get("case_ids")))
        except MatchFailed as exc:
            return MatchAnswer(error=str(exc))

    def _template(self, evidence_id: str) -> tuple[int, bytes, int]:
        with reading(self.factory) as session:
            template = matching.template_of(session, evidence_id=evidence_id)
            if template is None:
                raise MatchFailed(f"evidence {evidence_id} has no fingerprint template (any more)")
            return template.id, template.iso, template.minutiae

    def verify(self, probe_evidence_id: str, candidate_evidence_id: str) -> dict[str, Any]:
        """1:1: Bozorth3's score of two prints."""
        clock = time.perf_counter()
        _, probe_iso, probe_minutiae = self._template(probe_evidence_id)
        _, candidate_iso, candidate_minutiae = self._template(candidate_evidence_id)
        score = self.index.verify(probe_iso, candidate_iso)
        threshold = self.settings.fingerprint_match_threshold
        return {"score": score, "threshold": threshold, "probable_match": score >= threshold,
                "probe_minutiae": probe_minutiae, "candidate_minutiae": candidate_minutiae,
                "matcher": "bozorth3", "elapsed_ms": round((time.perf_counter() - clock) * 1000, 2)}

    def search(self, probe_evidence_id: str, *, limit: int, case_ids: list[str] | None = None) -> dict[str, Any]:
        """1:N: the best candidates among every print held, with Bozorth3 scores, across cases."""
        clock = time.perf_counter()
        self.refresh()
        _, probe_iso, probe_minutiae = self._template(probe_evidence_id)
        own = {tid for tid, evidence in self.evidence_of.items() if evidence == probe_evidence_id}
        wanted = limit if case_ids is None else max(limit * 4, 100)
        found = self.index.search(probe_iso, limit=wanted, rerank=self.settings.fingerprint_search_rerank,
                                  exclude=own)
        with reading(self.factory) as session:
            described = matching.describe_templates(session, template_ids=[int(c.template_id) for c in found])
        threshold = self.settings.fingerprint_match_threshold
        candidates = []
        for candidate in found:
            info = described.get(int(candidate.template_id))
            if info is None:  # its evidence was analysed again: the template is gone
                self.index.remove(candidate.template_id)
                self.evidence_of.pop(candidate.template_id, None)
                continue
            if case_ids is not None and info["case_id"] not in case_ids:
                continue
            candidates.append({**info, "score": int(candidate.score), "index_score": float(candidate.index_score),
                               "probable_match": candidate.score >= threshold})
            if len(candidates) == limit:
                break
        for rank, entry in enumerate(candidates, start=1):
            entry["rank"] = rank
        return {"candidates": candidates, "gallery_size": len(self.index), "probe_minutiae": probe_minutiae,
                "threshold": threshold, "matcher": "gallery index + bozorth3 rerank",
                "rerank": self.settings.fingerprint_search_rerank,
                "elapsed_ms": round((time.perf_counter() - clock) * 1000, 2)}
