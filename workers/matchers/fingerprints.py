"""Fingerprints: each print's template, 1:N against the tenprint gallery and against the prints of other evidence.

Consumes the fingerprints analyzer's `fingerprint.template` findings. Every held template (`fingerprint_templates`:
latents and known prints of every case, tenprint items included) is in one `FingerprintIndex`
(`models.fingerprint_index`): the minutia-pair index shortlists `Settings.fingerprint_search_rerank` candidates
and NIST Bozorth3 re-scores them, exactly as the fingerprint matcher actor (`workers.matcher`) answers a search.
A candidate scoring at least `Settings.fingerprint_match_threshold` (Bozorth3 40 by default, NIST's customary
"probable match") becomes a match: to the *person* when the candidate print is enrolled in the gallery
(`storage.tenprints`; one match per person, the best of their fingers, every finger that scored listed), to the
*finding* otherwise (another item, in this case or another: `detail["same_case"]`). The item's own templates
and, for an enrolled print, its own person are left out. The score is Bozorth3's, which reports no pairs: the
detail charts them itself (`models.minutiae_pairing`, a Hough rigid alignment of the two templates, ~10-20 ms a
proposal): `paired_minutiae` (which probe minutia is which candidate minutia, both as recorded, and the residual),
`paired_count` and `alignment` (rotation and translation of the probe onto the candidate, tolerances); for a
person, of their best-scoring finger. Beside them: both prints' minutiae counts and NFIQ 2, the finger position
and impression, and the index score.

The index lives in the process (crossmatch jobs run in the dispatcher): `GalleryCache` keeps it between jobs,
keyed by the database and the templates' count and newest id (`storage.tenprints.gallery_state`, two cheap
queries). New templates are added incrementally; when templates were deleted (re-analysis) it is rebuilt. Moving
this to the matcher actor later: `FingerprintMatcher` already holds the same index and catches up with
`templates_after`; give it a `propose(finding_id)` method returning these proposals' raw candidates, and have
`propose` here call the actor through `workers.runtime` instead of `_CACHE` (one index per cluster, not per
dispatcher, and Bozorth3 off the dispatcher's thread: nbis serialises Bozorth3 per process).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from models.fingerprint_index import FingerprintIndex
from models.fingerprints import FingerprintRejected
from models.minutiae_pairing import pair_minutiae
from storage import matching, tenprints
from storage.settings import get_settings
from storage.tenprints import GalleryHit, GalleryState
from workers.crossmatch import match_context
from workers.matchers.base import Matcher, Proposal, Subject
from workers.matchers.registry import register

KIND = "fingerprint.template"
REFRESH_BATCH = 10_000
DEFAULT_THRESHOLD = 40.0  # Settings.fingerprint_match_threshold's default


@dataclass
class GalleryCache:
    """One process's index of every held template, valid for one database while its `GalleryState` holds."""

    url: str = ""
    state: GalleryState = field(default_factory=lambda: GalleryState(0, 0, None))
    index: FingerprintIndex = field(default_factory=FingerprintIndex)
    evidence_of: dict[str, str] = field(default_factory=dict)
    rebuilds: int = 0  # how many times it was built from nothing (for tests and logs)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def current(self, session: Session) -> FingerprintIndex:
        """The index, caught up with the record store: new templates added, rebuilt when some were deleted."""
        url = session.get_bind().engine.url.render_as_string(hide_password=True)
        with self.lock:
            wanted = tenprints.gallery_state(session)
            if url == self.url and wanted == self.state:
                return self.index
            if url == self.url and wanted.max_id >= self.state.max_id:
                self._catch_up(session)
                if self.state == wanted:
                    return self.index
            # another database, or templates were deleted (re-analysis) or an id reused: build from nothing
            self.url, self.state = url, GalleryState(0, 0, None)
            self.index, self.evidence_of = FingerprintIndex(), {}
            self.rebuilds += 1
            self._catch_up(session)
            return self.index

    def _catch_up(self, session: Session) -> None:
        """Add the templates newer than the newest held; `state` then describes what the index holds."""
        state = self.state
        while batch := matching.templates_after(session, after_id=state.max_id, limit=REFRESH_BATCH):
            self.index.add_many((str(template.id), template.iso) for template in batch)
            self.evidence_of.update((str(template.id), template.evidence_id) for template in batch)
            state = GalleryState(state.count + len(batch), batch[-1].id, batch[-1].finding_id)
        self.state = state


_CACHE = GalleryCache()


def gallery_cache() -> GalleryCache:
    """This process's gallery index (one per process, shared by every crossmatch job)."""
    return _CACHE


def _chart(probe_iso: bytes, index: FingerprintIndex, template_id: int) -> dict[str, Any]:
    """The paired minutiae of the probe and a held template, and their alignment (`models.minutiae_pairing`)."""
    try:
        pairing = pair_minutiae(probe_iso, index.get(str(template_id))).as_dict()
    except KeyError:
        return {"paired_minutiae": None, "pairing_error": "the candidate template left the index meanwhile"}
    except FingerprintRejected as error:
        return {"paired_minutiae": None, "pairing_error": str(error)}
    alignment = {**pairing["alignment"], "probe_considered": pairing["probe_considered"],
                 "candidate_considered": pairing["candidate_considered"]}
    return {"paired_minutiae": pairing["pairs"], "paired_count": pairing["paired"], "alignment": alignment}


@register
class FingerprintCrossMatcher(Matcher):
    """Prints against the tenprint gallery (persons) and the prints of other evidence (findings), by Bozorth3."""

    name = "fingerprints"
    version = "1.1.0"
    modality = "fingerprint"
    consumes = frozenset({KIND})
    threshold = DEFAULT_THRESHOLD

    def __init__(self) -> None:
        settings = match_context().settings or get_settings()  # the dispatcher's settings while it cross-matches
        # The setting in force, recorded with each match (an instance value over the class default).
        self.threshold = float(settings.fingerprint_match_threshold)
        self.rerank = settings.fingerprint_search_rerank

    def propose(self, session: Session, subject: Subject) -> list[Proposal]:
        probe = tenprints.template_of_finding(session, finding_id=subject.finding_id)
        if probe is None:
            return []  # the finding holds no template (replaced meanwhile)
        cache = gallery_cache()
        index = cache.current(session)
        own = {tid for tid, evidence in cache.evidence_of.items() if evidence == subject.evidence_id}
        found = [c for c in index.search(probe.iso, limit=self.rerank, rerank=self.rerank, exclude=own)
                 if c.score >= self.threshold]
        hits = tenprints.gallery_hits(session, template_ids=[int(c.template_id) for c in found])
        own_persons = tenprints.persons_enrolled(session, evidence_id=subject.evidence_id)
        side_a = {"probe_minutiae": probe.minutiae, "probe_nfiq2": probe.nfiq2}
        by_person: dict[str, list[tuple[int, float, GalleryHit, tenprints.Enrolled]]] = defaultdict(list)
        proposals = []
        for candidate in found:
            hit = hits.get(int(candidate.template_id))
            if hit is None or hit.evidence_id == subject.evidence_id:
                continue  # deleted since the index saw it (the next job rebuilds)
            if hit.enrolled:
                for record in hit.enrolled:
                    if record.person_id not in own_persons:
                        by_person[record.person_id].append((candidate.score, candidate.index_score, hit, record))
                continue
            proposals.append(Proposal(
                "finding", hit.finding_id, float(candidate.score), "similarity",
                {**side_a, **self._side_b(hit), **_chart(probe.iso, index, hit.template_id),
                 "index_score": candidate.index_score,
                 "same_case": hit.case_id == subject.case_id},
                target_evidence_id=hit.evidence_id, target_case_id=hit.case_id, target_analyzer=hit.analyzer,
                target_version=hit.analyzer_version))
        for person_id, scored in by_person.items():
            scored.sort(key=lambda entry: (-entry[0], -entry[1], entry[3].record_id))
            score, index_score, best, record = scored[0]
            proposals.append(Proposal("person", person_id, float(score), "similarity", {
                **side_a, **self._side_b(best), **_chart(probe.iso, index, best.template_id), **self._finger(record),
                "index_score": index_score,
                "tenprint_evidence_id": best.evidence_id,
                "fingers_scored": [{**self._finger(r), "score": s, "evidence_id": h.evidence_id}
                                   for s, _, h, r in scored]}))
        return proposals

    @staticmethod
    def _side_b(hit: GalleryHit) -> dict[str, Any]:
        return {"candidate_minutiae": hit.minutiae, "candidate_nfiq2": hit.nfiq2,
                "candidate_template_id": hit.template_id}

    @staticmethod
    def _finger(record: tenprints.Enrolled) -> dict[str, Any]:
        return {"tenprint_record_id": record.record_id, "finger": record.finger,
                "finger_name": tenprints.finger_name(record.finger), "impression": record.impression}
