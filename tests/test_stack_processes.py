"""`locard up` / `down` / `status` and the processes of a home: identity by pid and start time, adoption of
what runs, restarting only what is down, and stopping everything of the home, Ray-like descendants that left
the process group or the session included.

The cheap tests run the real `EmbeddedStack` (real SeaweedFS, real SQLite, real process handling) with small
Python stand-ins for the worker service and the API; the slow one runs the real stack through the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from locard import processes
from locard.processes import ProcessIdentity
from locard.stack import OPERATOR, EmbeddedStack, StackState
from locard.survey import StackCommands
from storage import accounts
from storage.db import make_engine, session_factory
from storage.settings import Settings

SLEEPER = "import time\nwhile True:\n    time.sleep(1)\n"
# Like the worker service with its local Ray: one child in a process group of its own (Ray's actor
# processes), one in a session of its own, then the readiness line `EmbeddedStack` waits for.
FAKE_WORKER = f"""
import subprocess, sys, time
sleeper = {SLEEPER!r}
subprocess.Popen([sys.executable, "-c", sleeper], process_group=0)
subprocess.Popen([sys.executable, "-c", sleeper], start_new_session=True)
print("running analyzers", flush=True)
while True:
    time.sleep(1)
"""
FAKE_API = """
import http.server, sys
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def _quiet(_: str) -> None:
    pass


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedStack]:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "fake_worker.py").write_text(FAKE_WORKER)
    (scripts / "fake_api.py").write_text(FAKE_API)
    commands = StackCommands(worker=(sys.executable, str(scripts / "fake_worker.py")),
                             api=(sys.executable, str(scripts / "fake_api.py"), "{port}"))
    embedded = EmbeddedStack(Settings(home=tmp_path / "home"), commands=commands)
    try:
        yield embedded
    finally:
        embedded.down(_quiet)
        assert _home_processes(embedded) == []


def _home_processes(stack: EmbeddedStack) -> list[int]:
    """Every process of the home: what carries its marker, and its SeaweedFS."""
    return sorted(p.pid for p in processes.processes_of_home(stack.home)) + [p.pid for p in stack.survey().weed]


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while processes.read_process(pid) is not None:
        assert time.monotonic() < deadline, f"pid {pid} survived SIGKILL"
        time.sleep(0.05)


def _sleeper() -> subprocess.Popen[bytes]:
    """A process of no Locard home."""
    return subprocess.Popen([sys.executable, "-c", SLEEPER], start_new_session=True)


def _identity(pid: int) -> ProcessIdentity:
    info = processes.read_process(pid)
    assert info is not None
    return info.identity


def test_identity_is_pid_and_start_time(tmp_path: Path) -> None:
    sleeper = _sleeper()
    try:
        identity = _identity(sleeper.pid)
        stat = Path(f"/proc/{sleeper.pid}/stat").read_text()
        assert identity.start_time == int(stat[stat.rindex(")") + 2:].split()[19])
        assert processes.is_current(identity)
        recycled = ProcessIdentity(pid=identity.pid, start_time=identity.start_time - 1, cmdline=identity.cmdline)
        assert not processes.is_current(recycled)
        assert not processes.send(recycled, signal.SIGKILL)  # the pid is another process now: not signalled
        assert sleeper.poll() is None
        assert processes.stop([identity], grace=5.0) == [identity]
        assert not processes.is_current(identity) and processes.read_process(sleeper.pid) is None
    finally:
        sleeper.kill()


def test_up_records_and_marks_every_process(stack: EmbeddedStack) -> None:
    state = stack.up(_quiet, timeout=60)
    for name in ("worker", "api"):
        identity = state.identity(name)
        assert identity is not None and identity.pid == state.pids[name]
        assert processes.is_current(identity)
        assert identity.cmdline == tuple(stack.commands.argv(name, state.api_port))
    assert StackState.load(stack.home) == state
    marked = processes.processes_of_home(stack.home)
    worker = state.pids["worker"]
    assert sorted(p.role or "" for p in marked) == ["api", "worker", "worker", "worker"]
    children = [p for p in marked if p.ppid == worker]
    assert len(children) == 2
    assert {p.pgid == worker for p in children} == {False}  # both left the worker's process group
    status = stack.status()
    assert status.running() == {"seaweedfs": True, "worker": True, "api": True}
    assert {c.name: c.processes for c in status.components} == {"seaweedfs": 1, "worker": 3, "api": 1}
    assert status.strays == ()
    again = stack.up(_quiet, timeout=60)
    assert again.pids == state.pids  # nothing was down: nothing started


def test_api_killed_then_up_restarts_only_the_api(stack: EmbeddedStack) -> None:
    state = stack.up(_quiet, timeout=60)
    epoch = _operator_epoch(stack)
    _kill(state.pids["api"])
    assert stack.status().running() == {"seaweedfs": True, "worker": True, "api": False}
    said: list[str] = []
    again = stack.up(said.append, timeout=60)
    assert again.pids["worker"] == state.pids["worker"]
    assert again.pids["api"] != state.pids["api"] and processes.is_current(_identity(again.pids["api"]))
    assert any("Starting case API" in line for line in said) and not any("worker service in" in line for line in said)
    survey = stack.survey(again)
    assert [p.pid for p in survey.leaders["worker"]] == [state.pids["worker"]]
    assert len(processes.processes_of_home(stack.home)) == 4
    assert _operator_epoch(stack) == epoch  # the operator's sessions survive an API restart


def _operator_epoch(stack: EmbeddedStack) -> int:
    """The operator's token revocation epoch: it moves when the account's sessions are ended."""
    engine = make_engine(Settings(home=stack.home).effective_database_url)
    try:
        with session_factory(engine)() as session:
            user = accounts.get_user_by_name(session, username=OPERATOR)
            assert user is not None
            return int(user.token_epoch)
    finally:
        engine.dispose()


def test_worker_killed_then_up_restarts_only_the_worker_and_stops_its_leftovers(stack: EmbeddedStack) -> None:
    state = stack.up(_quiet, timeout=60)
    orphans = [p.identity for p in processes.processes_of_home(stack.home)
               if p.role == "worker" and p.pid != state.pids["worker"]]
    _kill(state.pids["worker"])
    status = stack.status()
    assert status.running()["worker"] is False
    assert sorted(p.pid for p in status.strays) == sorted(o.pid for o in orphans)  # left behind, still running
    again = stack.up(_quiet, timeout=60)
    assert again.pids["api"] == state.pids["api"]
    assert again.pids["worker"] != state.pids["worker"]
    assert not any(processes.is_current(orphan) for orphan in orphans)
    assert stack.status().strays == ()


def test_worker_lost_from_stack_json_is_adopted_not_duplicated(stack: EmbeddedStack) -> None:
    state = stack.up(_quiet, timeout=60)
    _kill(state.pids["api"])
    lost = json.loads(StackState.path(stack.home).read_text())
    lost["pids"], lost["processes"] = {}, {}  # what the old `up` left: the running worker service unrecorded
    StackState.path(stack.home).write_text(json.dumps(lost))
    status = stack.status()
    worker_status = next(c for c in status.components if c.name == "worker")
    assert worker_status.pid == state.pids["worker"] and not worker_status.recorded
    said: list[str] = []
    again = stack.up(said.append, timeout=60)
    assert again.pids["worker"] == state.pids["worker"]
    assert any(f"worker service already running (pid {state.pids['worker']}): adopted" in line for line in said)
    assert [p.pid for p in stack.survey(again).leaders["worker"]] == [state.pids["worker"]]
    assert sorted(p.role or "" for p in processes.processes_of_home(stack.home)) == ["api", "worker", "worker",
                                                                                     "worker"]


def test_lost_stack_json_is_recovered_from_the_running_processes(stack: EmbeddedStack) -> None:
    state = stack.up(_quiet, timeout=60)
    StackState.path(stack.home).unlink()
    again = stack.up(_quiet, timeout=60)
    assert again.pids == state.pids  # adopted: same settings, found in their environment
    assert (again.api_port, again.token_secret, again.audit_key, again.webhook_token) == \
        (state.api_port, state.token_secret, state.audit_key, state.webhook_token)


def test_a_second_worker_service_is_stopped(stack: EmbeddedStack) -> None:
    state = stack.up(_quiet, timeout=60)
    duplicate = subprocess.Popen(stack.commands.argv("worker", state.api_port),
                                 env=stack.environment(state, role="worker"), stdout=subprocess.DEVNULL,
                                 start_new_session=True)
    deadline = time.monotonic() + 30
    while len(processes.processes_of_home(stack.home)) < 7:  # its own two children started too
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(stack.survey(state).leaders["worker"]) == 2
    said: list[str] = []
    again = stack.up(said.append, timeout=60)
    assert again.pids["worker"] == state.pids["worker"]  # the recorded one is kept
    assert any(f"stopped a second worker service of this home (pid {duplicate.pid}, 3 processes)" in line
               for line in said)
    assert processes.read_process(duplicate.pid) is None
    assert len(processes.processes_of_home(stack.home)) == 4


def test_a_recycled_pid_is_neither_trusted_nor_killed(stack: EmbeddedStack) -> None:
    state = stack.up(_quiet, timeout=60)
    stranger = _sleeper()
    try:
        _kill(state.pids["api"])
        stack.seaweed.stop()
        # stack.json and SeaweedFS's pid file now name a pid that belongs to another program.
        recorded = json.loads(StackState.path(stack.home).read_text())
        recorded["pids"]["api"] = stranger.pid
        recorded["processes"]["api"] = {**recorded["processes"]["api"], "pid": stranger.pid}
        StackState.path(stack.home).write_text(json.dumps(recorded))
        stack.seaweed.pid_file.write_text(str(stranger.pid))
        assert stack.status().running() == {"seaweedfs": False, "worker": True, "api": False}
        again = stack.up(_quiet, timeout=60)
        assert again.pids["api"] != stranger.pid and stack.seaweed.running_pid() != stranger.pid
        assert stack.status().running() == {"seaweedfs": True, "worker": True, "api": True}
        stack.down(_quiet)
        assert stranger.poll() is None  # never signalled
        assert _home_processes(stack) == []
    finally:
        stranger.kill()


def test_down_stops_every_process_of_the_home(stack: EmbeddedStack) -> None:
    state = stack.up(_quiet, timeout=60)
    everything = [p.identity for p in processes.processes_of_home(stack.home)]
    assert len(everything) == 4 and len(stack.survey().weed) == 1
    outsider = _sleeper()
    try:
        said: list[str] = []
        stack.down(said.append)
        assert _home_processes(stack) == []
        assert not any(processes.is_current(identity) for identity in everything)
        assert outsider.poll() is None
        assert StackState.load(stack.home) is not None and StackState.load(stack.home).pids == {}  # type: ignore[union-attr]
        assert any(f"stopped worker service (pid {state.pids['worker']}, 3 processes)" in line for line in said)
        assert not any(stack.status().running().values())
    finally:
        outsider.kill()


# -- the real stack ------------------------------------------------------------------------------------


def _locard(home: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOCARD_")}
    env["LOCARD_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "locard.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_real_stack_api_crash_then_up_keeps_one_worker_service(tmp_path: Path) -> None:
    home = (tmp_path / "home").resolve()
    stack = EmbeddedStack(Settings(home=home))
    try:
        up = _locard(home, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        state = StackState.load(home)
        assert state is not None
        worker_tree = {p.pid for p in processes.processes_of_home(home) if p.role == "worker"}
        assert len(worker_tree) > 3  # the worker service and its Ray (GCS, raylet, actors ...)
        assert any(" ".join(p.cmdline).startswith("ray::AnalyzerWorker")
                   for p in processes.processes_of_home(home))
        os.kill(state.pids["api"], signal.SIGKILL)
        again = _locard(home, "up")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Starting case API in" in again.stdout and "worker service" not in again.stdout.split("Starting")[1]
        restarted = StackState.load(home)
        assert restarted is not None and restarted.pids["worker"] == state.pids["worker"]
        survey = stack.survey(restarted)
        assert [p.pid for p in survey.leaders["worker"]] == [state.pids["worker"]]
        assert [p.pid for p in survey.leaders["api"]] == [restarted.pids["api"]]
        assert stack.status().strays == ()
        status = _locard(home, "status")
        assert status.stdout.count("running") == 3 and "stray" not in status.stdout, status.stdout
    finally:
        down = _locard(home, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    deadline = time.monotonic() + 30
    while processes.processes_of_home(home) or stack.survey().weed:
        assert time.monotonic() < deadline, [p.describe() for p in processes.processes_of_home(home)]
        time.sleep(0.2)
