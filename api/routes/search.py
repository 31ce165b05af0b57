"""Full-text search over the text of every evidence page (OCR and PDF text layers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CurrentCase, CurrentPrincipal, PurposeDep, SessionDep, visible_case_ids
from api.schemas.analysis import TextHitRead
from storage import textsearch

router = APIRouter(tags=["search"])
SearchQuery = Annotated[str, Query(min_length=1, max_length=500, description="words that must all occur; "
                                                                              "\"in quotes\" for a phrase")]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=100_000)]


@router.get("/search", response_model=list[TextHitRead])
def search_all(q: SearchQuery, session: SessionDep, principal: CurrentPrincipal, purpose: PurposeDep,
               limit: Limit = 50, offset: Offset = 0) -> list[TextHitRead]:
    """Pages of evidence in every case the caller may see whose text matches `q`, best first (accents and case
    ignored). A search across cases needs a stated purpose (see the purpose headers)."""
    hits = textsearch.search(session, query=q, case_ids=visible_case_ids(session, principal), limit=limit,
                             offset=offset)
    return [TextHitRead.model_validate(hit, from_attributes=True) for hit in hits]


@router.get("/cases/{case_id}/search", response_model=list[TextHitRead])
def search_case(q: SearchQuery, case: CurrentCase, session: SessionDep, limit: Limit = 50,
                offset: Offset = 0) -> list[TextHitRead]:
    """Pages of this case's evidence whose text matches `q`, best first."""
    hits = textsearch.search(session, query=q, case_ids=[case.id], limit=limit, offset=offset)
    return [TextHitRead.model_validate(hit, from_attributes=True) for hit in hits]
