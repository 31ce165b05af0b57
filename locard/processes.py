"""The processes of one Locard home, read from /proc (Linux).

A process started by the embedded stack carries `LOCARD_HOME=<home>` and `LOCARD_STACK_ROLE=<component>` in
its environment, and passes both on to everything it starts (Ray's raylet, GCS, agents and actor processes
included, whatever process group or session they move to). A pid alone is never trusted: a process is known
by its pid *and* its start time (`/proc/<pid>/stat`, clock ticks after boot), so a pid the kernel has handed to
another program is neither signalled nor taken for ours. Signals go through a pidfd opened before the
identity is checked, so the check and the signal concern the same process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOME_VARIABLE = "LOCARD_HOME"
ROLE_VARIABLE = "LOCARD_STACK_ROLE"
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as recorded in stack.json: pid, start time and command line."""

    pid: int
    start_time: int
    cmdline: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "start_time": self.start_time, "cmdline": list(self.cmdline)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessIdentity:
        return cls(pid=int(data["pid"]), start_time=int(data["start_time"]),
                   cmdline=tuple(str(arg) for arg in data["cmdline"]))


@dataclass(frozen=True)
class ProcessInfo:
    """One live process: its identity, parentage and the LOCARD_* part of its environment."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    start_time: int
    cmdline: tuple[str, ...]
    locard_env: dict[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(pid=self.pid, start_time=self.start_time, cmdline=self.cmdline)

    @property
    def role(self) -> str | None:
        return self.locard_env.get(ROLE_VARIABLE)

    def describe(self) -> str:
        return " ".join(self.cmdline)[:160]


def _stat(pid: int) -> tuple[str, int, int, int, int] | None:
    """(state, ppid, pgid, sid, start time) of a process, or None when it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the name in parentheses may hold spaces
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])


def _reap(pid: int) -> None:
    """Collect a dead child of this process, so that it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def read_process(pid: int, *, with_environment: bool = True) -> ProcessInfo | None:
    """The process `pid`, or None when it is gone, a zombie, or not readable by us."""
    stat = _stat(pid)
    if stat is None:
        return None
    state, ppid, pgid, sid, start_time = stat
    if state in ("Z", "X"):
        _reap(pid)
        return None
    try:
        cmdline = tuple(arg.decode(errors="replace")
                        for arg in (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")[:-1])
        env: dict[str, str] = {}
        if with_environment:
            for entry in (PROC / str(pid) / "environ").read_bytes().split(b"\0"):
                if entry.startswith(b"LOCARD_"):
                    name, _, value = entry.decode(errors="replace").partition("=")
                    env[name] = value
    except OSError:
        return None
    return ProcessInfo(pid=pid, ppid=ppid, pgid=pgid, sid=sid, start_time=start_time, cmdline=cmdline,
                       locard_env=env)


def all_processes() -> list[ProcessInfo]:
    """Every process we can read, except this one."""
    own = os.getpid()
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and int(entry.name) != own:
            info = read_process(int(entry.name))
            if info is not None:
                found.append(info)
    return found


def processes_of_home(home: Path, processes: Iterable[ProcessInfo] | None = None) -> list[ProcessInfo]:
    """The processes whose environment names this home and a stack role: everything the stack started."""
    wanted = str(home)
    return [p for p in (all_processes() if processes is None else processes)
            if p.locard_env.get(HOME_VARIABLE) == wanted and p.role]


def is_current(identity: ProcessIdentity) -> bool:
    """True when `identity.pid` is still the process that was recorded: the same start time.

    The command line is not compared: Ray's processes retitle themselves (`ray::IDLE`, `ray::AnalyzerWorker`).
    """
    stat = _stat(identity.pid)
    if stat is None or stat[0] in ("Z", "X"):
        if stat is not None:
            _reap(identity.pid)
        return False
    return stat[4] == identity.start_time


def descendants(root: int, processes: Sequence[ProcessInfo]) -> list[ProcessInfo]:
    """The processes below `root` in the parent tree."""
    children: dict[int, list[ProcessInfo]] = {}
    for process in processes:
        children.setdefault(process.ppid, []).append(process)
    found: list[ProcessInfo] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def send(identity: ProcessIdentity, signum: int, *, group: bool = False) -> bool:
    """Signal the process (or, with `group`, the process group it leads) if it is still the one recorded.

    The pidfd pins the process: should the pid be reused after the check, the signal fails rather than reach
    another program. A group is signalled only while its leader is verified alive, so its id cannot be reused.
    """
    try:
        pidfd = os.pidfd_open(identity.pid)
    except OSError:
        return False
    try:
        if not is_current(identity):
            return False
        if group:
            if os.getpgid(identity.pid) != identity.pid:
                group = False  # not a group leader: signal the process alone
            else:
                os.killpg(identity.pid, signum)
                return True
        signal.pidfd_send_signal(pidfd, signum)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        os.close(pidfd)


def wait_gone(identities: Iterable[ProcessIdentity], timeout: float) -> list[ProcessIdentity]:
    """Wait up to `timeout` seconds for the processes to exit; returns those still running."""
    left = list(identities)
    deadline = time.monotonic() + timeout
    while True:
        left = [identity for identity in left if is_current(identity)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def stop(identities: Sequence[ProcessIdentity], *, grace: float, group: bool = False) -> list[ProcessIdentity]:
    """SIGTERM the processes (their groups with `group`), SIGKILL what is left after `grace` seconds.

    Returns the processes that were signalled. A pid that is no longer the recorded process is left alone.
    """
    signalled = [identity for identity in identities if send(identity, signal.SIGTERM, group=group)]
    for identity in wait_gone(signalled, grace):
        send(identity, signal.SIGKILL, group=group)
    wait_gone(signalled, 5.0)
    return signalled
