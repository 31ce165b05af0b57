"""The processes of one Locard home as the embedded stack sees them: its components' main processes, what
each owns (Ray's processes included), SeaweedFS, and strays."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from locard import processes
from locard.processes import HOME_VARIABLE, ProcessIdentity, ProcessInfo

COMPONENTS = ("worker", "api")  # started in this order; stopped in the reverse one
PORT = "{port}"  # stands for the API port in a command line


def _default_worker() -> tuple[str, ...]:
    return (sys.executable, "-m", "workers.service")


def _default_api() -> tuple[str, ...]:
    return (sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--host", "127.0.0.1",
            "--port", PORT, "--no-access-log", "--no-proxy-headers")  # Locard reads X-Forwarded-For itself


@dataclass(frozen=True)
class StackCommands:
    """The command lines of the worker service and the API (`{port}` is the API port)."""

    worker: tuple[str, ...] = field(default_factory=_default_worker)
    api: tuple[str, ...] = field(default_factory=_default_api)

    def argv(self, name: str, port: int) -> list[str]:
        return [arg.replace(PORT, str(port)) for arg in getattr(self, name)]

    def matches(self, name: str, cmdline: Sequence[str]) -> bool:
        """True when `cmdline` is this component's command, for any API port."""
        template = getattr(self, name)
        return len(template) == len(cmdline) and all(
            want == got or (PORT in want and got.isdigit()) for want, got in zip(template, cmdline, strict=True))


@dataclass(frozen=True)
class ComponentStatus:
    """One component: its main process (None when down) and how many processes it has, its own included."""

    name: str
    pid: int | None
    processes: int = 0
    recorded: bool = True  # False: running, but stack.json had lost it (`up` adopts it)

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True)
class StackStatus:
    components: tuple[ComponentStatus, ...]
    strays: tuple[ProcessInfo, ...]  # processes of this home that belong to no running component

    def running(self) -> dict[str, bool]:
        return {component.name: component.running for component in self.components}


@dataclass
class Survey:
    """The processes of one home, read from /proc."""

    leaders: dict[str, list[ProcessInfo]]  # main processes per component, oldest first
    members: list[ProcessInfo]  # every process that carries this home's stack role
    weed: list[ProcessInfo]  # `weed server` processes of this home's data directory

    def owned(self, leader: ProcessInfo) -> list[ProcessInfo]:
        """The processes that belong to a component's main process: its session or its descendants."""
        below = {p.pid for p in processes.descendants(leader.pid, self.members)}
        return [p for p in self.members if p.pid != leader.pid and p.start_time >= leader.start_time
                and (p.sid == leader.pid or p.pid in below)]

    def strays(self, kept: dict[str, ProcessInfo]) -> list[ProcessInfo]:
        owned = {p.pid for leader in kept.values() for p in [leader, *self.owned(leader)]}
        return [p for p in self.members if p.pid not in owned]


def _is_main(process: ProcessInfo, name: str, home: str, commands: StackCommands,
             by_pid: dict[int, ProcessInfo]) -> bool:
    """A component's main process: its command line, and not a fork of another process of that role."""
    if process.role not in (name, None) or not commands.matches(name, process.cmdline):
        return False
    parent = by_pid.get(process.ppid)
    return parent is None or parent.role != name or parent.locard_env.get(HOME_VARIABLE) != home


def survey(home: Path, commands: StackCommands, seaweed_data: Path,
           recorded: dict[str, ProcessIdentity]) -> Survey:
    """Every process of `home`: by the environment marker, plus the recorded ones that are verifiably current."""
    everything = processes.all_processes()
    ours = [p for p in everything if p.locard_env.get(HOME_VARIABLE) == str(home)]
    by_pid = {p.pid: p for p in everything}
    leaders: dict[str, list[ProcessInfo]] = {}
    for name in COMPONENTS:
        found = [p for p in ours if _is_main(p, name, str(home), commands, by_pid)]
        identity = recorded.get(name)
        if identity is not None and identity.pid in by_pid and processes.is_current(identity) \
                and all(p.pid != identity.pid for p in found):
            found.append(by_pid[identity.pid])
        leaders[name] = sorted(found, key=lambda p: p.start_time)
    data_dir = f"-dir={seaweed_data}"
    weed = [p for p in everything if len(p.cmdline) > 1 and p.cmdline[0].endswith("weed")
            and p.cmdline[1] == "server" and data_dir in p.cmdline]
    return Survey(leaders=leaders, members=[p for p in ours if p.role], weed=weed)
