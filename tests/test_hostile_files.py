"""The hostile-file corpus (tests/hostile_files.py) through every analyzer the planner would run, and through
the case API: no crash, no exception other than the documented bad-input ones, bounded time and memory.

Documented bad input is `AnalysisFailed` (and its `BadInput` subclass): the run fails with its reason. Anything
else (a library's own exception, findings that are not JSON) is an error here. The time bound (20 s per
analyzer run) is a hang guard, not a benchmark; the memory bound is on the resident memory a run adds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from storage.db import make_engine, session_factory
from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from storage.tables import Evidence
from tests.api_helpers import log_in
from tests.hostile_files import HostileFile, small_corpus, write
from tests.hostile_runner import evidence_for, load_analyzers, run_file
from tests.test_api import V1
from workers.analyzers.base import AnalysisLimits, Analyzer

CORPUS = small_corpus()
MAX_CPU_SECONDS = 20.0  # CPU time, not wall time: the budget holds on a loaded machine too
MAX_ADDED_MB = 2048.0
API_SUBSET = CORPUS[::8]  # 30 files, every family represented in turn


@pytest.fixture(scope="module")
def analyzers() -> dict[str, Analyzer]:
    return load_analyzers()


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("hostile")
    return {f"{file.family}/{file.name}": path for file, path in zip(CORPUS, write(CORPUS, directory), strict=True)}


def test_the_corpus_is_large_varied_and_deterministic() -> None:
    assert len(CORPUS) >= 200
    families = {file.family.split("-")[0] for file in CORPUS}
    assert {"truncated", "bitflip", "bomb", "polyglot", "zip", "pdf", "tiff", "png", "wsq", "mislabelled", "empty",
            "1x1", "1xN", "not", "declared"} <= families
    small_corpus.cache_clear()
    again = small_corpus()
    assert [hashlib.sha256(file.data).hexdigest() for file in again] == \
        [hashlib.sha256(file.data).hexdigest() for file in CORPUS]
    assert max(len(file.data) for file in CORPUS) < 1 << 20  # small: the large ones are for the benchmark


@pytest.mark.parametrize("hostile", CORPUS, ids=[f"{file.family}/{file.name}" for file in CORPUS])
def test_every_planned_analyzer_survives(hostile: HostileFile, analyzers: dict[str, Analyzer],
                                         corpus_dir: dict[str, Path]) -> None:
    path = corpus_dir[f"{hostile.family}/{hostile.name}"]
    item = evidence_for(path, filename=hostile.name, declared_kind=hostile.declared_kind)
    outcomes = run_file(analyzers, item, AnalysisLimits())
    assert {outcome.analyzer for outcome in outcomes} >= {"hashes", "media_probe"}  # every file is planned
    errors = [f"{outcome.analyzer}: {outcome.detail}" for outcome in outcomes if outcome.status == "error"]
    assert not errors, errors
    for outcome in outcomes:
        assert outcome.cpu_seconds < MAX_CPU_SECONDS, outcome
        assert outcome.peak_mb < MAX_ADDED_MB, outcome
    by_name = {outcome.analyzer: outcome for outcome in outcomes}
    assert by_name["hashes"].status == "succeeded"  # the digests of every file, whatever it holds
    if not hostile.data:
        assert by_name["media_probe"].status == "refused" and "empty" in by_name["media_probe"].detail


@pytest.fixture
def client(settings: Settings, s3_store: S3ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store=s3_store)) as test_client:
        yield log_in(test_client)


def test_hostile_uploads_get_no_5xx_and_leave_nothing_half_written(client: TestClient, settings: Settings) -> None:
    case_id = client.post(f"{V1}/cases", json={"reference": "2026-HOSTILE", "title": "hostile files"}).json()["id"]
    engine = make_engine(settings.effective_database_url)
    factory = session_factory(engine)
    accepted = 0
    try:
        for hostile in API_SUBSET:
            with factory() as session:
                before = session.scalar(select(func.count()).select_from(Evidence)) or 0
            response = client.post(f"{V1}/cases/{case_id}/evidence",
                                   files={"file": (hostile.name, hostile.data, "application/octet-stream")},
                                   data={"evidence_kind": hostile.declared_kind} if hostile.declared_kind else {})
            assert response.status_code < 500, (hostile.name, response.status_code, response.text)
            with factory() as session:
                after = session.scalar(select(func.count()).select_from(Evidence)) or 0
            if response.status_code >= 400:
                assert response.headers["content-type"].startswith("application/problem+json")
                assert after == before, hostile.name  # a refused upload records nothing
                continue
            accepted += 1
            evidence = response.json()["evidence"]
            assert evidence["sha256"] == hashlib.sha256(hostile.data).hexdigest()
            assert after == before + (1 if response.status_code == 201 else 0)
            content = client.get(f"{V1}/evidence/{evidence['id']}/content")
            assert content.status_code == 200 and content.content == hostile.data, hostile.name
            custody = client.get(f"{V1}/evidence/{evidence['id']}").json()["custody"]
            assert custody and custody[0]["action"]
    finally:
        engine.dispose()
    assert accepted >= len(API_SUBSET) - 3  # hostile content is evidence too: it is kept, hashed and analysed
