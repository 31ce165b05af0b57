"""Full-text search over the text of evidence pages: SQLite FTS5 embedded, PostgreSQL full-text in production.

Both search the same `folded` copy of the text: lower case without accents, folded character by character so
that it has exactly the length of the original, and a hit's offsets in `folded` are offsets in `text` too
(that is how snippets show the original wording). A query is split into words; every word must occur (AND);
a query in double quotes is a phrase.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal, select, text
from sqlalchemy.orm import Session

from storage.tables import Case, EvidenceText

WORD = re.compile(r"\w+", re.UNICODE)
SNIPPET_CHARS = 160
MAX_QUERY_WORDS = 16


@dataclass(frozen=True)
class TextHit:
    """One page whose text matches a query."""

    evidence_id: str
    case_id: str
    case_reference: str
    page: int
    language: str | None
    engine: str
    snippet: str
    rank: float


def fold(value: str) -> str:
    """Lower case without diacritics, one character for one character ("Liège" -> "liege", "Straße" -> "straße")."""
    out = []
    for char in value:
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        out.append(base.lower() if len(base) == 1 else char.lower())
    folded = "".join(out)
    return folded if len(folded) == len(value) else value.lower()


def index_page(session: Session, *, evidence_id: str, case_id: str, finding_id: str, page: int,
               language: str | None, engine: str, content: str) -> None:
    """Make one page's text searchable (the row is removed with its finding)."""
    session.add(EvidenceText(evidence_id=evidence_id, case_id=case_id, finding_id=finding_id, page=page,
                             language=language, engine=engine, text=content, folded=fold(content)))


def query_words(query: str) -> tuple[list[str], bool]:
    """The folded words of a query, and whether it asks for a phrase."""
    stripped = query.strip()
    phrase = len(stripped) > 1 and stripped.startswith('"') and stripped.endswith('"')
    return WORD.findall(fold(stripped))[:MAX_QUERY_WORDS], phrase


def search(session: Session, *, query: str, case_ids: Sequence[str] | None = None, limit: int = 50,
           offset: int = 0) -> list[TextHit]:
    """Pages whose text holds every word of `query` (or the phrase), best first; `case_ids` limits the cases."""
    words, phrase = query_words(query)
    if not words:
        return []
    dialect = session.get_bind().dialect.name
    scores: dict[int, float] = {}
    if dialect == "sqlite":
        match = '"' + " ".join(words) + '"' if phrase else " ".join(f'"{word}"' for word in words)
        rows = session.execute(
            text("SELECT rowid, bm25(evidence_text_fts) FROM evidence_text_fts "
                 "WHERE evidence_text_fts MATCH :match ORDER BY bm25(evidence_text_fts) LIMIT 5000"),
            {"match": match}).all()
        scores = {int(row[0]): -float(row[1]) for row in rows}
        condition = EvidenceText.id.in_(list(scores))
        rank_column: Any = literal(0.0)
    elif dialect == "postgresql":
        builder = func.phraseto_tsquery if phrase else func.plainto_tsquery
        tsquery = builder("simple", " ".join(words))
        vector = func.to_tsvector("simple", EvidenceText.folded)
        condition = vector.op("@@")(tsquery)
        rank_column = func.ts_rank(vector, tsquery)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported record stores
        raise ValueError(f"full-text search needs SQLite or PostgreSQL, not {dialect}")
    statement = (select(EvidenceText, Case.reference, rank_column).join(Case, Case.id == EvidenceText.case_id)
                 .where(condition).order_by(rank_column.desc(), EvidenceText.id))
    if case_ids is not None:
        statement = statement.where(EvidenceText.case_id.in_(list(case_ids)))
    hits = []
    for page_text, reference, score in session.execute(statement).all():
        rank = scores.get(page_text.id, 0.0) if dialect == "sqlite" else float(score)
        hits.append(TextHit(page_text.evidence_id, page_text.case_id, reference, page_text.page,
                            page_text.language, page_text.engine, snippet(page_text.text, page_text.folded, words),
                            rank))
    if dialect == "sqlite":
        hits.sort(key=lambda hit: -hit.rank)
    return hits[offset:offset + limit]


def snippet(original: str, folded: str, words: Sequence[str]) -> str:
    """About SNIPPET_CHARS characters of the original text around the first word of the query found."""
    at = -1
    for word in words:
        found = re.search(rf"\b{re.escape(word)}", folded)
        if found is not None:
            at = found.start()
            break
    if at < 0:
        return " ".join(original[:SNIPPET_CHARS].split())
    start = max(0, at - SNIPPET_CHARS // 3)
    piece = " ".join(original[start:start + SNIPPET_CHARS].split())
    return ("…" if start > 0 else "") + piece + ("…" if start + SNIPPET_CHARS < len(original) else "")
