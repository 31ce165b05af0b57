"""An in-process, scripted stand-in for Ray, for unit tests of the dispatcher. Never used by a running Locard.

`FakeRuntime` keeps the `workers.runtime.Runtime` contract: actors are plain objects, and an actor runs its calls
one at a time, in order, so a call that hangs holds up those queued behind it, as on Ray. What each `run` call
does is scripted (`FakeRuntime.script`): answer (the actor's method runs), die, be restarting (both fail the calls
queued on the actor too, and restart it), fail in the runtime, or hang until the test finishes it or the actor
is killed. Nothing waits or sleeps: `ready` answers at
once, and the dispatcher's time is a clock the test moves. Calls of other methods (a matcher's `work`) are
scripted the same way, each method on its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from workers.runtime import CallFailed, WorkerLost, WorkerUnavailable

# answer: the actor's method runs (an exception it raises is a CallFailed, a WorkerLost stays one);
# die: the worker process dies (WorkerLost) and is restarted; restarting: it cannot be reached
# (WorkerUnavailable) and is restarted; raise: the runtime delivers an error (CallFailed); hang: no answer yet.
Behaviour = Literal["answer", "die", "restarting", "raise", "hang"]


@dataclass(eq=False)
class FakeActor:
    """An actor: a plain object made from `cls`, made again when its worker dies (as Ray restarts it)."""

    cls: type
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    num_cpus: float
    instance: Any
    killed: bool = False
    restarts: int = 0
    queue: deque[FakeCall] = field(default_factory=deque)  # calls not answered yet, oldest first


@dataclass(eq=False)
class FakeCall:
    """One call on an actor: its handle, and (once done) its value or error."""

    actor: FakeActor
    method: str
    args: tuple[Any, ...]
    behaviour: Behaviour
    done: bool = False
    value: Any = None
    error: BaseException | None = None


class FakeRuntime:
    """Actors in this process, with scripted failures; records what was spawned, called and killed."""

    def __init__(self, *, cpus: float = 2.0) -> None:
        self.cpus = cpus
        self.actors: list[FakeActor] = []
        self.calls: list[FakeCall] = []
        self.killed: list[FakeActor] = []
        self.shut_down = False
        self._scripts: dict[str, deque[Behaviour]] = {}

    def script(self, *behaviours: Behaviour, method: str = "run") -> None:
        """How the next calls of `method` (an analyzer's `run`, a matcher's `work`) behave, in the order they
        are made (then: answer)."""
        self._scripts.setdefault(method, deque()).extend(behaviours)

    # -- the Runtime contract -------------------------------------------------------------------------
    def spawn(self, cls: type, *args: Any, num_cpus: float, **kwargs: Any) -> FakeActor:
        actor = FakeActor(cls, args, kwargs, num_cpus, cls(*args, **kwargs))
        self.actors.append(actor)
        return actor

    def call(self, actor: FakeActor, method: str, *args: Any) -> FakeCall:
        script = self._scripts.get(method)
        behaviour: Behaviour = script.popleft() if script else "answer"
        call = FakeCall(actor, method, args, behaviour)
        self.calls.append(call)
        if actor.killed:
            self._end(call, error=WorkerLost("the actor was killed"))
        else:
            actor.queue.append(call)
            self._advance(actor)
        return call

    def ready(self, handles: list[Any], timeout: float) -> list[Any]:
        return [handle for handle in handles if handle.done]

    def result(self, handle: FakeCall, timeout: float | None = None) -> Any:
        if not handle.done:
            raise TimeoutError(f"{handle.method} on {handle.actor.cls.__name__} has not answered")
        if handle.error is not None:
            raise handle.error
        return handle.value

    def kill(self, actor: FakeActor) -> None:
        actor.killed = True
        self.killed.append(actor)
        while actor.queue:
            self._end(actor.queue.popleft(), error=WorkerLost("the actor was killed"))

    def cluster_cpus(self) -> float:
        return self.cpus

    def shutdown(self) -> None:
        self.shut_down = True

    # -- scripting ------------------------------------------------------------------------------------
    def hanging(self) -> list[FakeCall]:
        """The calls that hang now (not answered, not ended by a kill)."""
        return [call for call in self.calls if not call.done and call.behaviour == "hang"]

    def finish(self, call: FakeCall) -> None:
        """Let a hanging call run to its answer; the calls queued behind it on the actor follow."""
        if call.done or call.behaviour != "hang":
            raise ValueError("only a hanging call can be finished")
        call.behaviour = "answer"
        self._advance(call.actor)

    def _advance(self, actor: FakeActor) -> None:
        """Run the actor's queued calls in order, up to the first that hangs."""
        while actor.queue and actor.queue[0].behaviour != "hang":
            call = actor.queue.popleft()
            if call.behaviour == "answer":
                try:
                    self._end(call, value=getattr(actor.instance, call.method)(*call.args))
                except WorkerLost as exc:
                    self._end(call, error=exc)
                except Exception as exc:
                    self._end(call, error=CallFailed(f"{type(exc).__name__}: {exc}"))
            elif call.behaviour == "raise":
                self._end(call, error=CallFailed(f"{call.method} failed in the runtime (scripted)"))
            else:  # the worker is gone: this call and those queued behind it fail; the actor is restarted
                error = (WorkerUnavailable("the worker is restarting (scripted)") if call.behaviour == "restarting"
                         else WorkerLost("the worker died (scripted)"))
                for lost in [call, *actor.queue]:
                    self._end(lost, error=error)
                actor.queue.clear()
                actor.instance = actor.cls(*actor.args, **actor.kwargs)
                actor.restarts += 1

    @staticmethod
    def _end(call: FakeCall, *, value: Any = None, error: BaseException | None = None) -> None:
        call.done, call.value, call.error = True, value, error
