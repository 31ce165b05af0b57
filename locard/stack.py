"""The embedded stack: SeaweedFS, the SQLite record store, the worker service (local Ray) and the API.

Everything lives under one home folder (`LOCARD_HOME`), ports included, so two homes never collide.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine

from storage import accounts
from storage.db import make_engine, migrate, session_factory, transaction
from storage.seaweed import SeaweedServer, free_port
from storage.settings import Settings

Say = Callable[[str], None]


class StackError(RuntimeError):
    """The embedded stack could not be started or reached."""


OPERATOR = "operator"  # the local supervisor account `locard demo` and `locard analyze` log in as


@dataclass
class StackState:
    """What `locard up` started, kept in `<home>/stack.json`."""

    api_url: str
    api_port: int
    webhook_token: str
    s3_endpoint: str
    pids: dict[str, int] = field(default_factory=dict)
    # Secrets of this stack, generated on its first start (the file is readable by its owner only).
    token_secret: str = ""
    audit_key: str = ""
    operator: str = OPERATOR
    operator_password: str = ""

    @staticmethod
    def path(home: Path) -> Path:
        return home / "stack.json"

    @classmethod
    def load(cls, home: Path) -> StackState | None:
        path = cls.path(home)
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def save(self, home: Path) -> None:
        path = self.path(home)
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie child of ours is not alive
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


class EmbeddedStack:
    """Start, inspect and stop the processes of one Locard home."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home.expanduser().resolve()
        self.logs = self.home / "logs"
        self.seaweed = SeaweedServer(self.home / "seaweedfs")

    def environment(self, state: StackState) -> dict[str, str]:
        """The settings every process of this stack shares, as environment variables."""
        config = self.seaweed.config
        env = dict(os.environ)
        env.update({
            "LOCARD_HOME": str(self.home), "LOCARD_S3_ENDPOINT": config.s3_endpoint,
            "LOCARD_S3_ACCESS_KEY": config.access_key, "LOCARD_S3_SECRET_KEY": config.secret_key,
            "LOCARD_WEBHOOK_TOKEN": state.webhook_token, "LOCARD_API_PORT": str(state.api_port),
            "LOCARD_TOKEN_SECRET": state.token_secret, "LOCARD_AUDIT_KEY": state.audit_key,
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": self.settings.ray_auth_mode,
            "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "OMP_THREAD_LIMIT": "1",
        })
        return env

    def status(self) -> dict[str, bool]:
        state = StackState.load(self.home)
        pids = state.pids if state else {}
        return {"seaweedfs": self.seaweed.running_pid() is not None,
                **{name: _alive(pid) for name, pid in pids.items()}}

    def up(self, say: Say, timeout: float = 180.0) -> StackState:
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        previous = StackState.load(self.home)
        if previous and previous.pids and all(self.status().values()):
            say(f"Locard is already running at {previous.api_url}")
            return previous
        clock = time.monotonic()
        say(f"Starting Locard in {self.home}")
        self.seaweed.start()
        say(f"  ✓ object store: SeaweedFS S3 on {self.seaweed.config.s3_endpoint} ({time.monotonic() - clock:.1f}s)")
        port = previous.api_port if previous else free_port()
        state = StackState(api_url=f"http://127.0.0.1:{port}", api_port=port,
                           webhook_token=previous.webhook_token if previous else secrets.token_urlsafe(32),
                           s3_endpoint=self.seaweed.config.s3_endpoint,
                           token_secret=previous.token_secret if previous and previous.token_secret
                           else secrets.token_urlsafe(48),
                           audit_key=previous.audit_key if previous and previous.audit_key
                           else secrets.token_urlsafe(48),
                           operator_password=previous.operator_password if previous and previous.operator_password
                           else secrets.token_urlsafe(24))
        env = self.environment(state)
        url = Settings(home=self.home).effective_database_url
        engine = make_engine(url)
        migrate(engine)
        self._ensure_operator(engine, state)
        engine.dispose()
        say(f"  ✓ record store: {url} (migrated; account {state.operator!r} in {StackState.path(self.home)})")
        worker_log_start = (self.logs / "worker.log").stat().st_size if (self.logs / "worker.log").exists() else 0
        state.pids["worker"] = self._spawn("worker", [sys.executable, "-m", "workers.service"], env)
        state.pids["api"] = self._spawn("api", [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
                                               "--host", "127.0.0.1", "--port", str(port), "--no-access-log"], env)
        state.save(self.home)
        self._wait_api(state, say, clock, timeout)
        self._wait_worker(say, clock, timeout, log_start=worker_log_start)
        return state

    @staticmethod
    def _ensure_operator(engine: Engine, state: StackState) -> None:
        """The local supervisor account, with the password kept in stack.json."""
        with transaction(session_factory(engine, chain_key=state.audit_key.encode())) as session:
            user = accounts.get_user_by_name(session, username=state.operator)
            if user is None:
                accounts.create_user(session, username=state.operator, password=state.operator_password,
                                     roles=[accounts.SUPERVISOR], display_name="Local operator",
                                     created_by="locard up")
            else:
                accounts.set_password(session, user=user, password=state.operator_password)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> int:
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home)
        return process.pid

    def _wait_api(self, state: StackState, say: Say, clock: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(state.pids["api"]):
                raise StackError(f"the API exited; see {self.logs / 'api.log'}")
            try:
                if httpx.get(f"{state.api_url}/api/v1/health", timeout=2).status_code == 200:
                    say(f"  ✓ case API answering ({time.monotonic() - clock:.1f}s)")
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise StackError(f"the API did not answer within {timeout:.0f}s; see {self.logs / 'api.log'}")

    def _wait_worker(self, say: Say, clock: float, timeout: float, *, log_start: int) -> None:
        """Wait until this start's part of the worker log says the analyzer actors are running."""
        log = self.logs / "worker.log"
        state = StackState.load(self.home)
        assert state is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(state.pids["worker"]):
                raise StackError(f"the worker service exited; see {log}")
            if log.exists() and b"running analyzers" in _read_from(log, log_start):
                say(f"  ✓ analysis workers on Ray ready ({time.monotonic() - clock:.1f}s)")
                return
            time.sleep(0.5)
        raise StackError(f"the worker service did not become ready within {timeout:.0f}s; see {log}")

    def down(self, say: Say) -> None:
        state = StackState.load(self.home)
        for name in ("api", "worker"):
            pid = state.pids.get(name) if state else None
            if pid and _alive(pid):
                _terminate(pid, grace=20.0 if name == "worker" else 10.0)
                say(f"  ✓ stopped {name}")
        if state:
            state.pids = {}
            state.save(self.home)
        if self.seaweed.running_pid() is not None:
            self.seaweed.stop()
            say("  ✓ stopped SeaweedFS")


def _read_from(path: Path, offset: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read()


def _terminate(pid: int, grace: float) -> None:
    """SIGTERM a process group, then SIGKILL what is left after `grace` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
