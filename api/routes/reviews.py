"""The review of matches (issue 13; the EU Prüm II rule: a human checks every automated match before personal data
is exchanged): decisions, reopenings, assignments, an examiner's queue and the calibration of matcher settings.

Who: a forensic examiner confirms or rejects a candidate match with a reason (`POST /matches/{id}/decisions`),
never one who uploaded evidence on either side (403, with the reason) and only one who may see both of its sides
(a finding in a case they are not assigned to: 403); a decided match is decided again only after a supervisor
reopens it (`POST /matches/{id}/reopen`, 409 until then). Supervisors assign a match to an examiner's queue
(`PUT /matches/{id}/assignment`). Examiners and supervisors read a match's review history, their queue
(`GET /reviews/queue`: the live candidates in the cases they may see, assigned to them or to nobody, none on
evidence they uploaded; highest score first, then oldest) and the calibration (`GET /reviews/calibration`: per
modality and threshold, the matches reviewed and rejected and the observed false-match rate).

A match is found as `GET /matches/{id}` finds it: by a reader who may see one of its sides, else 404 (the same as
a missing id); the match is loaded before the role is checked, so another case's match is a 404 to everyone.
What a confirmation changes for investigators (the register data behind the match is released, the first time to
each as an audited disclosure) is in `api.routes.matches`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, status
from sqlalchemy.orm import Session

from api.access import note_of
from api.deps import (
    CurrentPrincipal,
    SessionDep,
    case_visible,
    refusal,
    require_roles,
    visible_case_ids,
    visible_case_or_404,
)
from api.principal import Principal
from api.problems import Problem
from api.schemas.reviews import (
    AssignmentRead,
    AssignmentUpdate,
    CalibrationRead,
    DecisionCreate,
    DecisionRead,
    QueueItemRead,
    ReopenCreate,
)
from storage import accounts, match_queries, reviews
from storage.matches import Match
from storage.registers import CONTROL_CHARACTERS
from storage.roles import FORENSIC_EXAMINER, SUPERVISOR

router = APIRouter(tags=["reviews"])
REVIEW_ROLES = (FORENSIC_EXAMINER, SUPERVISOR)
Offset = Annotated[int, Query(ge=0, le=100_000)]
Limit = Annotated[int, Query(ge=1, le=200)]
Modality = Literal["plate", "entity", "face", "fingerprint", "image"]  # storage.matches.MODALITIES
REFUSALS = {reviews.ReviewRefused.UPLOADER: (403, "Not permitted"),
            reviews.ReviewRefused.DECIDED: (409, "Already decided"),
            reviews.ReviewRefused.SUPERSEDED: (409, "Match superseded"),
            reviews.ReviewRefused.UNDECIDED: (409, "Not decided")}


def _anchor(session: Session, principal: Principal, match: Match) -> str | None:
    """The first of the match's sides' cases the principal may see."""
    return next((case for case in (match.case_id, match.target_case_id)
                 if case is not None and case_visible(session, principal, case)), None)


def load_match(request: Request, session: SessionDep, principal: CurrentPrincipal,
               match_id: Annotated[str, Path(max_length=64)]) -> Match:
    """The match, noted in the request's audit entry; 404 when missing or when no side is visible to the caller."""
    match = match_queries.get_match(session, match_id=match_id)
    anchor = None if match is None else _anchor(session, principal, match)
    if match is None or anchor is None:
        raise Problem(404, "Match not found", f"There is no match {match_id}.")
    note = note_of(request)
    if note is not None:
        note.case_id, note.resource_id = anchor, match.id
    return match


CurrentMatch = Annotated[Match, Depends(load_match)]


def _refused(request: Request, exc: reviews.ReviewRefused) -> Problem:
    code, title = REFUSALS[exc.why]
    return refusal(request, code, title, str(exc))


@router.post("/matches/{match_id}/decisions", status_code=status.HTTP_201_CREATED, response_model=DecisionRead,
             responses={403: {"description": "not an examiner, an uploader of either side, or a side not visible"},
                        409: {"description": "already decided (a supervisor may reopen it), or superseded"}})
def decide(request: Request, match: CurrentMatch, body: DecisionCreate, session: SessionDep,
           principal: Principal = require_roles(FORENSIC_EXAMINER)) -> DecisionRead:
    """Confirm or reject a candidate match, with the reason. A rejected pair is never proposed again, also after
    re-analysis, a model upgrade or a re-import (`storage.review_records`)."""
    hidden = [case for case in (match.case_id, match.target_case_id)
              if case is not None and not case_visible(session, principal, case)]
    if hidden:
        raise refusal(request, 403, "Not permitted", "One side of this match is in a case you are not assigned to: "
                                                     "an examiner who may see both sides must review it.")
    note = note_of(request)
    if note is not None:
        note.action = "alteration"
        note.detail["verdict"] = body.verdict
    try:
        decision = reviews.decide(session, match=match, verdict=body.verdict, reason=body.reason,
                                  examiner=principal.name)
    except reviews.ReviewRefused as exc:
        raise _refused(request, exc) from exc
    return DecisionRead.model_validate(decision)


@router.get("/matches/{match_id}/decisions", response_model=list[DecisionRead])
def decisions(match: CurrentMatch, session: SessionDep,
              principal: Principal = require_roles(*REVIEW_ROLES)) -> list[DecisionRead]:
    """The match's review history, oldest first: each verdict and reopening with its reason, by whom, when."""
    return [DecisionRead.model_validate(d) for d in reviews.decisions_of(session, match_id=match.id)]


@router.post("/matches/{match_id}/reopen", status_code=status.HTTP_201_CREATED, response_model=DecisionRead,
             responses={409: {"description": "the match is not decided"}})
def reopen(request: Request, match: CurrentMatch, body: ReopenCreate, session: SessionDep,
           principal: Principal = require_roles(SUPERVISOR)) -> DecisionRead:
    """Make a decided match a candidate again, with the reason (a rejection no longer keeps its pair away)."""
    note = note_of(request)
    if note is not None:
        note.action = "alteration"
    try:
        decision = reviews.reopen(session, match=match, reason=body.reason, supervisor=principal.name)
    except reviews.ReviewRefused as exc:
        raise _refused(request, exc) from exc
    return DecisionRead.model_validate(decision)


@router.put("/matches/{match_id}/assignment", response_model=AssignmentRead)
def assign(request: Request, match: CurrentMatch, body: AssignmentUpdate, session: SessionDep,
           principal: Principal = require_roles(SUPERVISOR)) -> AssignmentRead:
    """Put the match in one examiner's queue (`examiner`: an account name), or back in every examiner's (null).
    An account known here must hold the forensic examiner role; an OpenID Connect user not seen yet is accepted."""
    examiner = body.examiner.strip().lower() if body.examiner is not None else None
    if examiner is not None:
        if not examiner or CONTROL_CHARACTERS.search(examiner):
            raise Problem(422, "Invalid examiner", "The examiner's name is empty or contains control characters.")
        known = accounts.get_user_by_name(session, username=examiner)
        if known is not None and FORENSIC_EXAMINER not in known.roles:
            raise Problem(422, "Not an examiner", f"{examiner!r} does not hold the {FORENSIC_EXAMINER} role.")
    reviews.assign(session, match=match, examiner=examiner)
    return AssignmentRead(match_id=match.id, assigned_to=match.assigned_to, assigned_at=match.assigned_at)


def _queue_item(match: Match, anchor: str, references: dict[str, str]) -> QueueItemRead:
    evidence = match.evidence_id if anchor == match.case_id else match.target_evidence_id
    target: Literal["finding", "vehicle", "person"] = (
        "vehicle" if match.target_kind == "vehicle" else "person" if match.target_kind == "person" else "finding")
    return QueueItemRead(match_id=match.id, modality=match.modality, score=match.score, threshold=match.threshold,
                         method=match.method, matcher=match.matcher, matcher_version=match.matcher_version,
                         case_id=anchor, case_reference=references.get(anchor), evidence_id=evidence,
                         target_kind=target,
                         other_case=match.target_case_id is not None and match.target_case_id != match.case_id,
                         assigned_to=match.assigned_to, created_at=match.created_at)


@router.get("/reviews/queue", response_model=list[QueueItemRead])
def review_queue(request: Request, session: SessionDep, principal: Principal = require_roles(*REVIEW_ROLES),
                 modality: Modality | None = None,
                 case_id: Annotated[str | None, Query(max_length=64)] = None,
                 offset: Offset = 0, limit: Limit = 50) -> list[QueueItemRead]:
    """The caller's review queue: candidates assigned to them or to nobody in the cases they may see (a case
    asked for must be one: else 404), none on evidence they uploaded; highest score first, then oldest."""
    if case_id is not None:
        visible_case_or_404(request, session, principal, case_id)
    visible = visible_case_ids(session, principal)
    found: Sequence[Match] = reviews.queue(session, examiner=principal.name, case_ids=visible, modality=modality,
                                           case_id=case_id, offset=offset, limit=limit)
    anchors = {match.id: _anchor(session, principal, match) or match.case_id for match in found}
    references = match_queries.case_references(session, case_ids=set(anchors.values()))
    return [_queue_item(match, anchors[match.id], references) for match in found]


@router.get("/reviews/calibration", response_model=list[CalibrationRead])
def calibration(session: SessionDep, principal: Principal = require_roles(*REVIEW_ROLES),
                modality: Modality | None = None) -> list[CalibrationRead]:
    """Per modality and threshold, the matches reviewed, confirmed and rejected, and the observed false-match rate
    (rejected / reviewed), over every case: counts only, nothing of any case or person."""
    return [CalibrationRead(modality=row.modality, threshold=row.threshold, reviewed=row.reviewed,
                            confirmed=row.confirmed, rejected=row.rejected, false_match_rate=row.false_match_rate)
            for row in reviews.calibration(session, modality=modality)]
