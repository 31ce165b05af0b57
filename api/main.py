"""The FastAPI application factory: `uvicorn --factory --no-proxy-headers api.main:create_app` (see api.clientaddr)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from api.access import AccessMiddleware
from api.limits import BodyRefused, RequestLimitsMiddleware
from api.problems import install_problem_handlers, problem_response
from api.routes import (
    admin,
    audit,
    auth,
    cases,
    evidence,
    fingerprints,
    intake,
    leads,
    matches,
    persons,
    registers,
    reviews,
    search,
    searches,
    subscriptions,
    tenprints,
    vehicles,
    watchlists,
)
from api.spool import prepare_spool, remove_spool
from storage.db import make_engine, migrate, session_factory
from storage.objectstore import ObjectStore, S3ObjectStore
from storage.settings import Settings, get_settings

API_PREFIX = "/api/v1"
# Bodies that stream to disk under limits of their own; every other body is capped at `Settings.max_json_bytes`.
STREAMED_BODIES = (("POST", re.compile(rf"^{API_PREFIX}/cases/[^/]+/evidence$")),
                   ("POST", re.compile(rf"^{API_PREFIX}/registers/[^/]+/import$")))


def create_app(settings: Settings | None = None, store: ObjectStore | None = None) -> FastAPI:
    """Build the API; the record store is migrated and the buckets prepared when it starts."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.effective_database_url)
        migrate(engine)
        app.state.spool = prepare_spool(settings.home)  # a killed process's upload files are removed here
        app.state.settings = settings
        app.state.session_factory = session_factory(engine, chain_key=settings.chain_key)
        app.state.store = store or S3ObjectStore.from_settings(settings)
        app.state.store.ensure_buckets()
        yield
        engine.dispose()
        remove_spool(app.state.spool)

    development = settings.environment == "development"
    app = FastAPI(title="Locard case API", version="0.1.0", lifespan=lifespan,
                  description="Forensic evidence intake, analysis results and chain of custody.",
                  # Outside development the schema is served only to authenticated callers (under /api/v1).
                  openapi_url="/openapi.json" if development else None, docs_url="/docs" if development else None,
                  redoc_url=None)
    install_problem_handlers(app)

    @app.exception_handler(BodyRefused)
    async def _body_refused(request: Request, exc: BodyRefused) -> JSONResponse:
        return problem_response(request, exc.status_code, exc.title, str(exc.detail), headers={"Connection": "close"})

    # Authentication first (AccessMiddleware is outermost, so refusals are logged), then the body limits.
    app.add_middleware(RequestLimitsMiddleware, max_body_bytes=settings.max_json_bytes,
                       read_timeout=settings.body_read_timeout_seconds, streamed=STREAMED_BODIES)
    app.add_middleware(AccessMiddleware)
    v1 = APIRouter(prefix=API_PREFIX)

    @v1.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    v1.include_router(cases.router)
    v1.include_router(evidence.router)
    v1.include_router(intake.router)
    v1.include_router(search.router)
    v1.include_router(fingerprints.router)
    v1.include_router(auth.router)
    v1.include_router(admin.router)
    v1.include_router(audit.router)
    for register_router in (persons.router, vehicles.router, watchlists.router, registers.router):
        v1.include_router(register_router)
    v1.include_router(matches.router)
    v1.include_router(searches.router)
    v1.include_router(tenprints.router)
    v1.include_router(reviews.router)
    v1.include_router(leads.router)
    v1.include_router(subscriptions.router)

    @v1.get("/openapi.json", include_in_schema=False)
    def openapi_document() -> dict[str, Any]:
        return app.openapi()

    app.include_router(v1)
    return app
