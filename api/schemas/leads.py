"""Response models of leads and of the identity graph (`api.routes.leads`).

A lead names its two cases as the reader may see them (`LeadCaseRead.withheld` says why the other is not named,
and `ask` whom to ask about it), its reasons in plain words (`summary`) and each link; values, items and match
ids of the links only when the other case is shown. A graph node in a case the reader may not see is a
placeholder (`withheld`, `ask`) with an id of the answer only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

LeadWithheld = Literal["not_assigned", "purpose"]


class LeadCaseRead(BaseModel):
    """One case of a lead: named (id and reference) when the reader may see it and, for the other case, stated a
    purpose; else `withheld` and, for a case the reader may not see, whom to ask (`ask`: user names, empty for
    any supervisor)."""

    case_id: str | None = None
    reference: str | None = None
    withheld: LeadWithheld | None = None
    ask: list[str] | None = None


class LeadLinkRead(BaseModel):
    """One link of a lead: a match between findings of both cases ("shared"), or both cases' matches to one
    register record ("register"). Values, items and matches are named only when the whole lead is shown."""

    kind: Literal["shared", "register"]
    modality: str
    status: str
    score: float
    strength: float  # score over the threshold in force, at most 2
    reason: str
    match_ids: list[str] | None = None
    evidence: list[dict[str, str]] | None = None  # {"case_id", "evidence_id"} of each side in a case
    value: str | None = None
    record_kind: str | None = None
    record_id: str | None = None


class LeadRead(BaseModel):
    """Two linked cases, `case` the one it is read from, and why (`summary`, `links`)."""

    id: str
    case: LeadCaseRead
    other: LeadCaseRead
    summary: str
    confirmed: int
    links_count: int
    strength: float
    links: list[LeadLinkRead]


class GraphNodeRead(BaseModel):
    """A node of the identity graph (`id`: "kind:key" within this answer; "withheld:n" for a node in a case the
    reader may not see, whose `key` is not given)."""

    id: str
    kind: str
    key: str | None = None
    distance: int
    withheld: Literal["not_assigned"] | None = None
    ask: list[str] | None = None
    case_id: str | None = None
    case_reference: str | None = None
    evidence_id: str | None = None
    label: str | None = None
    fields: dict[str, Any] = {}
    exists: bool = True


class GraphEdgeRead(BaseModel):
    """A "contains" edge (an item to a trace read in it) or a "match" edge (one live match; `via` the node both of
    its sides share, when it links two items)."""

    kind: Literal["contains", "match"]
    source: str
    target: str
    via: str | None = None
    match_id: str | None = None
    modality: str | None = None
    score: float | None = None
    threshold: float | None = None
    status: str | None = None


class GraphRead(BaseModel):
    """The graph around `root`, up to `depth` hops; `truncated` when nodes or edges were left out."""

    root: str
    depth: int
    truncated: bool
    nodes: list[GraphNodeRead]
    edges: list[GraphEdgeRead]
