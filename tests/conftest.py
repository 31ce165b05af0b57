"""Shared fixtures: real SeaweedFS, SQLite and PostgreSQL record stores, local Ray."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from storage.db import make_engine, migrate, session_factory
from storage.objectstore import S3ObjectStore
from storage.seaweed import SeaweedServer
from storage.settings import Settings
from tests.throttle_clock import Clock, freeze

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("YOLO_OFFLINE", "1")

POSTGRES_ADMIN_URL = os.environ.get("LOCARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One real SeaweedFS S3 server for the whole test session."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"), max_volumes=4000)  # volumes are sparse files
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_store(seaweed: SeaweedServer) -> S3ObjectStore:
    """An object store on SeaweedFS with buckets of its own (object lock, 1-day compliance retention)."""
    from minio import Minio

    client = Minio(seaweed.config.s3_endpoint, access_key=seaweed.config.access_key,
                   secret_key=seaweed.config.secret_key, secure=False)
    suffix = uuid.uuid4().hex[:10]
    store = S3ObjectStore(client, evidence_bucket=f"evidence-{suffix}", derived_bucket=f"derived-{suffix}",
                          retention_mode="COMPLIANCE", retention_days=1)
    store.ensure_buckets()
    return store


def _postgres_database() -> Iterator[str]:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"locard_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty record store: SQLite (embedded default) and PostgreSQL (production)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'locard.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


TEST_TOKEN_SECRET = "locard-test-token-secret-7f3a9c2e5b1d8a64"
TEST_AUDIT_KEY = "locard-test-audit-key-4b8e1f6a3c9d2e75a1"


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine, chain_key=TEST_AUDIT_KEY.encode())


@pytest.fixture
def settings(tmp_path: Path, database_url: str, seaweed: SeaweedServer, s3_store: S3ObjectStore) -> Settings:
    """Settings of a test deployment on the real SeaweedFS and the parametrised record store."""
    return Settings(_env_file=None, environment="test", home=tmp_path / "home", database_url=database_url,  # type: ignore[call-arg]
                    s3_endpoint=seaweed.config.s3_endpoint, s3_access_key=seaweed.config.access_key,
                    s3_secret_key=seaweed.config.secret_key, evidence_bucket=s3_store.evidence_bucket,
                    derived_bucket=s3_store.derived_bucket, retention_days=1, max_upload_bytes=8 * 1024 * 1024,
                    webhook_token="test-webhook-token-0123456789", sweep_interval_seconds=0.5,
                    job_lease_seconds=5, worker_restart_seconds=3, ray_num_cpus=2,
                    token_secret=TEST_TOKEN_SECRET, audit_key=TEST_AUDIT_KEY)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The login throttle's clock, frozen; the test moves it (`clock.advance(seconds)`)."""
    return freeze(monkeypatch)
