"""Matches are told to the cases on their sides: a new match, a confirmation and a rejection each become one
event per case (`storage.events.publish_match`), written with the match in the same transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import events, matches, reviews
from storage.db import transaction
from tests import match_samples as samples
from workers.crossmatch import crossmatch


def _events(factory: sessionmaker[Session]) -> list[tuple[str, list[str], str]]:
    with factory() as session:
        return [(event.kind, list(event.case_ids), event.payload["match_id"])
                for event in session.scalars(select(events.Event).order_by(events.Event.id))]


def test_a_new_match_and_its_verdict_are_published_once_to_each_case_on_its_sides(
        factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        first, second = samples.item(session, "2026-E1"), samples.item(session, "2026-E2")
        samples.record(session, first, "plates", "2.1.0", [samples.plate("4-KLM-321")])
        samples.record(session, second, "plates", "2.1.0", [samples.plate("4-KLM-321")])
        crossmatch(session, evidence_id=first.id)
        crossmatch(session, evidence_id=second.id)
    [(created_a, cases_a, match_id), (created_b, cases_b, same)] = _events(factory)
    assert (created_a, created_b, match_id) == (events.MATCH_CREATED, events.MATCH_CREATED, same)
    assert sorted(cases_a + cases_b) == sorted([first.case_id, second.case_id])
    with transaction(factory) as session:
        assert crossmatch(session, evidence_id=first.id).new == 0  # matched again: nothing new, nothing told
    assert len(_events(factory)) == 2
    with transaction(factory) as session:
        match = session.get_one(matches.Match, match_id)
        reviews.decide(session, match=match, verdict="confirmed", reason="same plate, same car", examiner="eva")
    confirmed = _events(factory)[2:]
    assert [(kind, match) for kind, _, match in confirmed] == [(events.MATCH_CONFIRMED, match_id)] * 2
    assert sorted(case for _, cases, _ in confirmed for case in cases) == sorted([first.case_id, second.case_id])
