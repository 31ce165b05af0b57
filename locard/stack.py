"""The embedded stack: SeaweedFS, the SQLite record store, the worker service (local Ray) and the API.

Everything lives under one home folder (`LOCARD_HOME`), ports included, so two homes never collide. Every
process the stack starts is recorded in `stack.json` by pid and start time, and carries `LOCARD_HOME` and
`LOCARD_STACK_ROLE` in its environment (see `locard.processes`), so `up` finds what still runs of this home,
adopts it and starts only what is down, and `down` stops all of it, Ray's processes included.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine

from locard import processes
from locard.processes import HOME_VARIABLE, ROLE_VARIABLE, ProcessIdentity, ProcessInfo
from locard.survey import COMPONENTS, ComponentStatus, StackCommands, StackStatus, Survey, survey
from storage import accounts
from storage.db import make_engine, migrate, session_factory, transaction
from storage.roles import SUPERVISOR
from storage.seaweed import SeaweedServer, free_port
from storage.settings import Settings

Say = Callable[[str], None]
LABELS = {"worker": "worker service", "api": "case API"}
GRACE = {"worker": 20.0, "api": 10.0}  # seconds between SIGTERM and SIGKILL


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
    # Each process by pid, start time and command line: a pid reused by another program is never trusted.
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)
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

    def record(self, name: str, identity: ProcessIdentity | None) -> None:
        if identity is None:
            self.pids.pop(name, None)
            self.processes.pop(name, None)
        else:
            self.pids[name] = identity.pid
            self.processes[name] = identity.to_json()

    def identity(self, name: str) -> ProcessIdentity | None:
        data = self.processes.get(name)
        return ProcessIdentity.from_json(data) if data else None


def _alive(identity: ProcessIdentity | None) -> bool:
    return identity is not None and processes.is_current(identity)


class EmbeddedStack:
    """Start, inspect and stop the processes of one Locard home."""

    def __init__(self, settings: Settings, commands: StackCommands | None = None) -> None:
        self.settings = settings
        self.home = settings.home.expanduser().resolve()
        self.logs = self.home / "logs"
        self.seaweed = SeaweedServer(self.home / "seaweedfs")
        self.commands = commands or StackCommands()

    def environment(self, state: StackState, role: str | None = None) -> dict[str, str]:
        """The settings every process of this stack shares, as environment variables."""
        config = self.seaweed.config
        env = {key: value for key, value in os.environ.items() if key != ROLE_VARIABLE}
        env.update({
            HOME_VARIABLE: str(self.home), "LOCARD_S3_ENDPOINT": config.s3_endpoint,
            "LOCARD_S3_ACCESS_KEY": config.access_key, "LOCARD_S3_SECRET_KEY": config.secret_key,
            "LOCARD_WEBHOOK_TOKEN": state.webhook_token, "LOCARD_API_PORT": str(state.api_port),
            "LOCARD_TOKEN_SECRET": state.token_secret, "LOCARD_AUDIT_KEY": state.audit_key,
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": self.settings.ray_auth_mode,
            "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "OMP_THREAD_LIMIT": "1",
        })
        if role is not None:
            env[ROLE_VARIABLE] = role
        return env

    # -- finding the processes of this home ----------------------------------------------------------------

    def survey(self, state: StackState | None = None) -> Survey:
        """Every process of this home: by the environment marker, plus what stack.json verifiably records."""
        recorded = {name: identity for name in COMPONENTS if state and (identity := state.identity(name))}
        return survey(self.home, self.commands, self.seaweed.data_dir, recorded)

    def _compatible(self, process: ProcessInfo, state: StackState) -> bool:
        """True when a running process has this stack's settings (port, secrets, object store)."""
        env = process.locard_env
        expected = self.environment(state)
        keys = ("LOCARD_API_PORT", "LOCARD_TOKEN_SECRET", "LOCARD_AUDIT_KEY", "LOCARD_WEBHOOK_TOKEN",
                "LOCARD_S3_ENDPOINT", "LOCARD_S3_ACCESS_KEY")
        return all(env.get(key) == expected[key] for key in keys)

    def _recovered(self, survey: Survey) -> StackState | None:
        """stack.json is gone but processes of this home run: their environment holds the stack's settings."""
        for leader in (p for name in COMPONENTS for p in survey.leaders[name]):
            env = leader.locard_env
            if all(env.get(key) for key in ("LOCARD_API_PORT", "LOCARD_TOKEN_SECRET", "LOCARD_AUDIT_KEY",
                                            "LOCARD_WEBHOOK_TOKEN")):
                port = int(env["LOCARD_API_PORT"])
                return StackState(api_url=f"http://127.0.0.1:{port}", api_port=port,
                                  webhook_token=env["LOCARD_WEBHOOK_TOKEN"], s3_endpoint="",
                                  token_secret=env["LOCARD_TOKEN_SECRET"], audit_key=env["LOCARD_AUDIT_KEY"])
        return None

    def status(self) -> StackStatus:
        state = StackState.load(self.home)
        survey = self.survey(state)
        weed_pid = self._seaweed_pid(survey)
        components = [ComponentStatus("seaweedfs", weed_pid, 1 if weed_pid else 0)]
        kept: dict[str, ProcessInfo] = {}
        for name in COMPONENTS:
            recorded = state.identity(name) if state else None
            found = survey.leaders[name]
            leader = next((p for p in found if recorded and p.identity.start_time == recorded.start_time
                           and p.pid == recorded.pid), found[0] if found else None)
            if leader is None:
                components.append(ComponentStatus(name, None))
                continue
            kept[name] = leader
            components.append(ComponentStatus(name, leader.pid, 1 + len(survey.owned(leader)),
                                              recorded=recorded is not None and recorded.pid == leader.pid))
        strays = survey.strays(kept) + [p for p in survey.weed if p.pid != weed_pid]
        return StackStatus(components=tuple(components), strays=tuple(strays))

    def _seaweed_pid(self, survey: Survey) -> int | None:
        """The pid in SeaweedFS's pid file, if it is this home's `weed server` (not a reused pid)."""
        pid = self.seaweed.running_pid()
        return pid if pid is not None and any(p.pid == pid for p in survey.weed) else None

    # -- up ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One `up` or `down` of a home at a time."""
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / "stack.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def up(self, say: Say, timeout: float = 180.0) -> StackState:
        """Start what is down of this home, adopt what runs, stop duplicates and leftovers."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with self._locked():
            return self._up(say, timeout)

    def _up(self, say: Say, timeout: float) -> StackState:
        clock = time.monotonic()
        survey = self.survey(StackState.load(self.home))
        previous = StackState.load(self.home) or self._recovered(survey)
        state = self._new_state(previous)
        kept = self._settle(survey, state, say)
        self._ensure_seaweed(say, clock)
        state.s3_endpoint = self.seaweed.config.s3_endpoint
        for name in COMPONENTS:
            state.record(name, kept[name].identity if name in kept else None)
        missing = [name for name in COMPONENTS if name not in kept]
        if not missing:
            state.save(self.home)
            say(f"Locard is already running at {state.api_url}")
            return state
        say(f"Starting {' and '.join(LABELS[name] for name in missing)} in {self.home}")
        url = Settings(home=self.home).effective_database_url
        engine = make_engine(url)
        migrate(engine)
        self._ensure_operator(engine, state)
        engine.dispose()
        say(f"  ✓ record store: {url} (migrated; account {state.operator!r} in {StackState.path(self.home)})")
        worker_log = self.logs / "worker.log"
        worker_log_start = worker_log.stat().st_size if worker_log.exists() else 0
        for name in missing:
            state.record(name, self._spawn(name, self.commands.argv(name, state.api_port),
                                           self.environment(state, role=name)))
        state.save(self.home)
        self._wait_api(state, say, clock, timeout)
        if "worker" in missing:
            self._wait_worker(state, say, clock, timeout, log_start=worker_log_start)
        return state

    def _new_state(self, previous: StackState | None) -> StackState:
        port = previous.api_port if previous else free_port()

        def kept(name: str, size: int) -> str:
            return str(getattr(previous, name, "") or "") or secrets.token_urlsafe(size)

        return StackState(api_url=f"http://127.0.0.1:{port}", api_port=port, webhook_token=kept("webhook_token", 32),
                          s3_endpoint=self.seaweed.config.s3_endpoint,
                          processes=dict(previous.processes) if previous else {},
                          token_secret=kept("token_secret", 48), audit_key=kept("audit_key", 48),
                          operator_password=kept("operator_password", 24))

    def _settle(self, survey: Survey, state: StackState, say: Say) -> dict[str, ProcessInfo]:
        """Keep one running main process per component (the recorded one, else the oldest that has this
        stack's settings); stop the others with their processes, and every leftover of this home."""
        kept: dict[str, ProcessInfo] = {}
        for name in COMPONENTS:
            recorded = state.identity(name)
            candidates = sorted(survey.leaders[name], key=lambda p: not (
                recorded is not None and p.pid == recorded.pid and p.start_time == recorded.start_time))
            for candidate in candidates:
                if name not in kept and self._compatible(candidate, state):
                    kept[name] = candidate
                    if recorded is None or recorded.pid != candidate.pid:
                        say(f"  ✓ {LABELS[name]} already running (pid {candidate.pid}): adopted")
                    continue
                count = self._stop_tree(survey, candidate, name)
                reason = "a second" if name in kept else "an incompatible"
                say(f"  ✓ stopped {reason} {LABELS[name]} of this home (pid {candidate.pid}, {count} processes)")
        strays = self.survey(state).strays(kept)
        if strays:
            processes.stop([p.identity for p in strays], grace=3.0)
            say(f"  ✓ stopped {len(strays)} leftover process(es) of this home")
        return kept

    def _stop_tree(self, survey: Survey, leader: ProcessInfo, name: str) -> int:
        """Stop a main process (its process group) and then everything it owns, by pid."""
        owned = survey.owned(leader)
        processes.stop([leader.identity], grace=GRACE[name], group=True)
        processes.stop([p.identity for p in owned if processes.is_current(p.identity)], grace=3.0)
        return 1 + len(owned)

    def _ensure_seaweed(self, say: Say, clock: float) -> None:
        survey = self.survey()
        pid = self.seaweed.running_pid()
        if pid is not None and self._seaweed_pid(survey) is None:
            self.seaweed.pid_file.unlink(missing_ok=True)  # a stale pid file: that pid is another program now
            say(f"  (SeaweedFS's pid file named pid {pid}, which is not SeaweedFS of this home: ignored)")
            pid = None
        strays = [p for p in survey.weed if p.pid != pid]
        if strays:
            processes.stop([p.identity for p in strays], grace=8.0, group=True)
            say(f"  ✓ stopped {len(strays)} SeaweedFS process(es) of this home missing from its pid file")
        if pid is not None:
            self.seaweed.start()
            say(f"  ✓ object store: SeaweedFS already running (pid {pid})")
            return
        self.seaweed.start()
        say(f"  ✓ object store: SeaweedFS S3 on {self.seaweed.config.s3_endpoint} ({time.monotonic() - clock:.1f}s)")

    @staticmethod
    def _ensure_operator(engine: Engine, state: StackState) -> None:
        """The local supervisor account, with the password kept in stack.json."""
        with transaction(session_factory(engine, chain_key=state.audit_key.encode())) as session:
            user = accounts.get_user_by_name(session, username=state.operator)
            if user is None:
                accounts.create_user(session, username=state.operator, password=state.operator_password,
                                     roles=[SUPERVISOR], display_name="Local operator",
                                     created_by="locard up")
            elif not _password_matches(user.password_hash, state.operator_password):
                # Setting a password ends the account's sessions: only when it changed, so that restarting
                # the API alone leaves `locard analyze` and other clients logged in.
                accounts.set_password(session, user=user, password=state.operator_password)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> ProcessIdentity:
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home)
        info = processes.read_process(process.pid, with_environment=False)
        if info is None:
            raise StackError(f"the {LABELS[name]} exited at once; see {self.logs / f'{name}.log'}")
        return ProcessIdentity(pid=info.pid, start_time=info.start_time, cmdline=tuple(argv))

    def _wait_api(self, state: StackState, say: Say, clock: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(state.identity("api")):
                raise StackError(f"the API exited; see {self.logs / 'api.log'}")
            try:
                if httpx.get(f"{state.api_url}/api/v1/health", timeout=2).status_code == 200:
                    say(f"  ✓ case API answering ({time.monotonic() - clock:.1f}s)")
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise StackError(f"the API did not answer within {timeout:.0f}s; see {self.logs / 'api.log'}")

    def _wait_worker(self, state: StackState, say: Say, clock: float, timeout: float, *, log_start: int) -> None:
        """Wait until this start's part of the worker log says the analyzer actors are running."""
        log = self.logs / "worker.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(state.identity("worker")):
                raise StackError(f"the worker service exited; see {log}")
            if log.exists() and b"running analyzers" in _read_from(log, log_start):
                say(f"  ✓ analysis workers on Ray ready ({time.monotonic() - clock:.1f}s)")
                return
            time.sleep(0.5)
        raise StackError(f"the worker service did not become ready within {timeout:.0f}s; see {log}")

    # -- down -------------------------------------------------------------------------------------------

    def down(self, say: Say) -> None:
        """Stop every process of this home: the API, the worker service with Ray's processes, strays, SeaweedFS."""
        with self._locked():
            state = StackState.load(self.home)
            survey = self.survey(state)
            for name in reversed(COMPONENTS):
                for leader in survey.leaders[name]:
                    count = self._stop_tree(survey, leader, name)
                    say(f"  ✓ stopped {LABELS[name]} (pid {leader.pid}, {count} processes)")
            strays = processes.processes_of_home(self.home)
            if strays:
                processes.stop([p.identity for p in strays], grace=3.0)
                say(f"  ✓ stopped {len(strays)} other process(es) of this home")
            survey = self.survey()
            pid = self._seaweed_pid(survey)
            if pid is not None:
                self.seaweed.stop()
                say("  ✓ stopped SeaweedFS")
            elif self.seaweed.running_pid() is not None:
                self.seaweed.pid_file.unlink(missing_ok=True)  # names another program now: never signal it
            strays = [p for p in survey.weed if p.pid != pid]
            if strays:
                processes.stop([p.identity for p in strays], grace=8.0, group=True)
                say(f"  ✓ stopped {len(strays)} SeaweedFS process(es) missing from its pid file")
            if state:
                state.pids, state.processes = {}, {}
                state.save(self.home)


def _password_matches(password_hash: str | None, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return password_hash is not None and PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _read_from(path: Path, offset: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read()


def with_stack_identity(settings: Settings) -> Settings:
    """`settings` completed from this home's embedded stack (its audit key and S3 identity) where they are not set,
    for the commands that work on the record store and buckets directly (`locard audit`, `locard users`)."""
    state = StackState.load(settings.home.expanduser().resolve())
    if state is None:
        return settings
    update: dict[str, object] = {}
    if not settings.audit_key.get_secret_value() and state.audit_key:
        update["audit_key"] = SecretStr(state.audit_key)
    if not settings.s3_access_key:
        config = EmbeddedStack(settings).seaweed.config
        update.update(s3_endpoint=config.s3_endpoint, s3_access_key=config.access_key,
                      s3_secret_key=SecretStr(config.secret_key))
    return settings.model_copy(update=update)
