"""Typed dependencies: settings, a session per request, the object store, the principal, load-or-404."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from api.problems import Problem
from storage import records
from storage.objectstore import ObjectStore
from storage.schema import Case, Evidence
from storage.settings import Settings


@dataclass(frozen=True)
class Principal:
    """Who is making a request. Every route receives it through `CurrentPrincipal`."""

    name: str
    kind: str = "user"


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session, session.begin():
        yield session


def get_store(request: Request) -> ObjectStore:
    store: ObjectStore = request.app.state.store
    return store


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]


def get_principal(settings: SettingsDep) -> Principal:
    """The one place that decides who is calling; authentication plugs in here."""
    return Principal(name=settings.operator_name)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def load_case(session: SessionDep, principal: CurrentPrincipal,
              case_id: Annotated[str, Path(max_length=64)]) -> Case:
    case = records.get_case(session, case_id=case_id)
    if case is None:
        raise Problem(404, "Case not found", f"There is no case {case_id}.")
    return case


def load_evidence(session: SessionDep, principal: CurrentPrincipal,
                  evidence_id: Annotated[str, Path(max_length=64)]) -> Evidence:
    evidence = records.get_evidence(session, evidence_id=evidence_id)
    if evidence is None:
        raise Problem(404, "Evidence not found", f"There is no evidence item {evidence_id}.")
    return evidence


CurrentCase = Annotated[Case, Depends(load_case)]
CurrentEvidence = Annotated[Evidence, Depends(load_evidence)]
