"""Importing Locard changes nothing outside it: the audit chaining lives on the session factory `storage.db` builds.

A fresh interpreter imports every module of storage, models, api, workers and locard and checks that no
SQLAlchemy listener was registered globally, that the environment and the root logger are as they were; the
record-store tests check that only sessions of `storage.db.session_factory` chain audit and custody rows.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from storage import audit, chaining
from storage.audit import AuditEntry, ChainHead
from storage.db import session_factory, transaction

ROOT = Path(__file__).resolve().parents[1]
KEY = b"test-import-side-effects-key-0123456789"

# Run in a fresh interpreter: the test process has imported (and configured) everything already.
PROBE = r"""
import importlib, json, logging, os, pkgutil, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

environment, root = dict(os.environ), logging.getLogger()
handlers, level = list(root.handlers), root.level

import storage.audit
from storage import chaining
audit_only = event.contains(Session, "before_flush", chaining._chain_new_rows)

imported = []
for package in ("storage", "models", "api", "workers", "locard"):
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        if ".migrations" not in info.name:
            importlib.import_module(info.name)
            imported.append(info.name)

listeners = []
for target in (Session, Engine, Pool):
    for name in dir(target.dispatch):
        found = getattr(getattr(target.dispatch, name), "_clslevel", {}).get(target, ())
        listeners += [f"{target.__name__}.{name}: {getattr(fn, '__qualname__', fn)}" for fn in found]
print(json.dumps({
    "audit_only": audit_only, "imported": imported, "listeners": listeners,
    "environment": sorted(key for key in set(environment) | set(os.environ)
                          if environment.get(key) != os.environ.get(key)),
    "root_logger": [repr(h) for h in root.handlers if h not in handlers] + ([] if root.level == level else ["level"]),
}))
"""


def test_importing_locard_registers_nothing_global() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["audit_only"] is False  # importing storage.audit registers no listener on Session
    assert {"storage.audit", "storage.db", "storage.chaining", "models.base", "api.main",
            "workers.dispatcher", "locard.cli"} <= set(found["imported"])
    assert found["listeners"] == []
    assert found["environment"] == []
    assert found["root_logger"] == []


def _head(engine: Engine) -> int:
    with sessionmaker(engine)() as session:
        return session.execute(select(ChainHead.last_id).where(ChainHead.name == "audit")).scalar_one()


def test_only_sessions_of_the_locard_factory_chain(engine: Engine) -> None:
    plain = sessionmaker(engine)
    assert not chaining.installed(plain)
    with plain() as session:
        entry = audit.record(session, actor="plain", roles=[], action="consultation", resource="evidence")
        with pytest.raises(IntegrityError):  # unchained: no hashes, which the audit log requires
            session.flush()
        assert entry.prev_hash is None and entry.entry_hash is None
    assert _head(engine) == 0

    factory = session_factory(engine, chain_key=KEY)
    chaining.install(factory)  # a second install adds nothing: each row is chained once
    assert chaining.installed(factory)
    with transaction(factory) as session:
        for n in range(2):
            audit.record(session, actor="locard", roles=[], action="consultation", resource="evidence",
                         detail={"n": n})
    with factory() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        result = audit.verify(session, chain="audit", key=KEY)
    assert [row.id for row in rows] == [1, 2] and rows[1].prev_hash == rows[0].entry_hash
    assert result.ok and result.checked == 2 and _head(engine) == 2


def test_every_factory_chains_even_when_its_session_class_reuses_a_collected_ones_address(engine: Engine) -> None:
    """SQLAlchemy keys event listeners by the id() of each sessionmaker's session class and keeps the key after
    the class is collected: a new factory whose class landed at the same address looked installed and was not
    (262 of 300 factories in a loop, before the install was marked on the factory)."""
    for n in range(100):
        factory = session_factory(engine, chain_key=KEY)
        with transaction(factory) as session:
            entry = audit.record(session, actor="locard", roles=[], action="consultation", resource="evidence",
                                 detail={"n": n})
            session.flush()
            assert entry.entry_hash is not None, f"factory {n} does not chain"
        del factory, session
        gc.collect(1)  # the young generations: enough to free the class, cheap in a full suite's heap
