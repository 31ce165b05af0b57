"""Request and response models of the searches by face image and by similar image."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.base import ReadModel
from storage.searches import DEFAULT_LIMIT, MAX_LIMIT

CaseId = Annotated[str, Field(min_length=1, max_length=64)]


class SearchCreate(BaseModel):
    """What every search names: the probe item, how many candidates, and optionally the cases to search."""

    model_config = ConfigDict(extra="forbid")

    evidence_id: str = Field(min_length=1, max_length=64, description="the probe: an item of a case you may see")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    case_ids: list[CaseId] | None = Field(default=None, min_length=1, max_length=100,
                                          description="search these cases only (each one you may see); "
                                                      "default: every case you may see")


class FaceSearchCreate(SearchCreate):
    """Search the faces of every case for the probe's face (1:N, dlib embeddings)."""

    finding_id: str | None = Field(default=None, min_length=1, max_length=64,
                                   description="one of the probe's faces (a faces.face finding); default: its "
                                               "largest face with an embedding")


class ImageSearchCreate(SearchCreate):
    """Search every case for pictures like the probe's: near-duplicates by PDQ, then the nearest scenes."""

    verify: bool = Field(default=True, description="verify the first 10 candidates geometrically (RANSAC on "
                                                   "keypoints); the confirmed ones rank first")


class SearchRequestRead(ReadModel):
    """A search request; `result` holds the ranked candidates once `status` is "succeeded"."""

    id: str
    kind: str
    probe_evidence_id: str
    parameters: dict[str, Any]
    status: str
    result: dict[str, Any]
    error: str | None
    requested_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
