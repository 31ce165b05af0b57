"""Record-store engine and sessions; the schema is owned by Alembic migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from storage import chaining
from storage.settings import DEVELOPMENT_AUDIT_KEY

MIGRATIONS = Path(__file__).parent / "migrations"
# Execution option naming how a SQLite transaction begins: "IMMEDIATE" (default; takes the write lock at once) or
# "DEFERRED" for read-only work that must not hold writers back, e.g.
# `session.connection(execution_options={SQLITE_BEGIN: "DEFERRED"})` before the session's first query.
SQLITE_BEGIN = "locard_sqlite_begin"


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout so API and workers can share it.

    SQLite follows SQLAlchemy's recipe for pysqlite ("Serializable isolation / Savepoints / Transactional DDL"):
    the driver's own transaction handling is switched off and every transaction starts with `BEGIN IMMEDIATE`,
    so reads are part of the transaction, a SAVEPOINT never commits on its own, and a transaction that reads and
    then writes waits for the write lock (busy timeout) instead of failing on a stale snapshot.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # no implicit BEGIN, no implicit COMMIT before DDL
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Connection) -> None:
            mode = connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
            connection.exec_driver_sql("BEGIN" if mode == "DEFERRED" else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """Bring the record store's schema to the newest migration (idempotent)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine, *, chain_key: bytes | None = None) -> sessionmaker[Session]:
    """Sessions on `engine` whose audit and custody rows are chained with `chain_key` (`Settings.chain_key`).

    Every session Locard makes comes from here: the chaining is installed on this factory (`storage.chaining`),
    not on SQLAlchemy's `Session`, so a session made any other way writes no chained rows. Without a key, the
    development key is used: every process writing to one record store must pass the same key, or its rows will
    not verify.
    """
    key = chain_key if chain_key is not None else DEVELOPMENT_AUDIT_KEY.encode()
    factory = sessionmaker(engine, expire_on_commit=False, info={"chain_key": key})
    chaining.install(factory)
    return factory


@contextmanager
def reading(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for read-only work (verification, reports): on SQLite its transaction begins DEFERRED, so a long
    read never holds writers back; on PostgreSQL it is an ordinary session."""
    with factory() as session:
        session.connection(execution_options={SQLITE_BEGIN: "DEFERRED"})
        yield session


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on error."""
    with factory() as session, session.begin():
        yield session
