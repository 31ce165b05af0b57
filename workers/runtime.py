"""The seam to Ray: every actor start, call, wait, result, kill and shutdown of Locard goes through `Runtime`.

`init_ray` starts a local Ray on the embedded stack, or joins the cluster that `ray_address` names.
`RayRuntime` starts and calls Ray actors and turns Ray's failures into `WorkerLost` (the worker died),
`WorkerUnavailable` (it is restarting) and `CallFailed`; `LocalRuntime` runs the same calls in-process, and
`workers.fakes.FakeRuntime` lets tests script them. No other module of Locard imports Ray (an import-linter
contract holds this); evaluation benchmarks may.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol

from storage.settings import Settings


def ray_environment(settings: Settings) -> dict[str, str]:
    """The environment every Ray command of this deployment must share."""
    return {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": settings.ray_auth_mode}


def init_ray(settings: Settings) -> None:
    """Connect to the configured cluster, or start a local Ray sized for this machine.

    Ray reads RAY_AUTH_MODE once, when it is first imported: the environment is set before that, and a
    process that imported Ray earlier under another mode is refused rather than left to fail obscurely.
    """
    import sys

    environment = ray_environment(settings)
    if "ray" in sys.modules and os.environ.get("RAY_AUTH_MODE") != environment["RAY_AUTH_MODE"]:
        raise RuntimeError(f"Ray was imported before RAY_AUTH_MODE was set to {environment['RAY_AUTH_MODE']!r}; "
                           "set it in the environment of every Ray process")
    os.environ.update(environment)
    import ray

    if ray.is_initialized():
        return
    if settings.ray_address:
        ray.init(address=settings.ray_address, logging_level=logging.WARNING, log_to_driver=False)
        return
    ray.init(num_cpus=settings.ray_num_cpus or os.cpu_count() or 1, include_dashboard=False,
             object_store_memory=200 * 1024 * 1024, logging_level=logging.WARNING, log_to_driver=False,
             runtime_env={"env_vars": ray_environment(settings)})


class WorkerLost(Exception):
    """The worker process running a call died (crashed, was killed, or ran out of memory)."""


class WorkerUnavailable(WorkerLost):
    """The worker could not be reached: it is restarting, or its node is gone."""


class CallFailed(Exception):
    """The call itself raised (the runtime delivered an exception from the worker's code)."""


class Runtime(Protocol):
    """Where analyzer and matcher actors live: start them, call them, wait for and read answers, end them.

    A call returns a handle at once; `ready` says which handles have an answer, and `result` returns it or raises
    `WorkerLost` / `WorkerUnavailable` / `CallFailed`. Actors are restarted by the runtime when their process
    dies (a call in flight then fails), and their calls are never retried by it: the dispatcher decides.
    """

    def spawn(self, cls: type, *args: Any, num_cpus: float, **kwargs: Any) -> Any:
        """Start an actor running `cls(*args, **kwargs)` that holds `num_cpus` CPUs for life; returns its handle."""
        ...

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        """Start `actor.method(*args)`; returns a handle for `ready` and `result`."""
        ...

    def ready(self, handles: list[Any], timeout: float) -> list[Any]:
        """The handles (of `handles`) whose answer is in, waiting up to `timeout` seconds for the first."""
        ...

    def result(self, handle: Any, timeout: float | None = None) -> Any:
        """The answer of a call, or the failure it ended in."""
        ...

    def kill(self, actor: Any) -> None:
        """End an actor for good (its replacement is a new actor); calls in flight on it fail."""
        ...

    def cluster_cpus(self) -> float:
        """CPUs the cluster has for actors (their reservations are scaled to fit)."""
        ...

    def shutdown(self) -> None:
        """Let go of the cluster (a local one stops) when the worker service stops."""
        ...


class RayRuntime:
    """Actors on Ray: a call returns an ObjectRef; results and failures come back through `result`."""

    def __init__(self) -> None:
        self._remote: dict[type, Any] = {}

    def spawn(self, cls: type, *args: Any, num_cpus: float, **kwargs: Any) -> Any:
        """Ray restarts an actor whose process dies (`max_restarts=-1`) and never re-runs its calls."""
        import ray

        if cls not in self._remote:
            self._remote[cls] = ray.remote(cls)
        return self._remote[cls].options(num_cpus=num_cpus, max_restarts=-1, max_task_retries=0).remote(
            *args, **kwargs)

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        return getattr(actor, method).remote(*args)

    def ready(self, handles: list[Any], timeout: float) -> list[Any]:
        import ray

        done, _ = ray.wait(handles, num_returns=len(handles), timeout=timeout)
        return list(done)

    def result(self, handle: Any, timeout: float | None = None) -> Any:
        import ray
        from ray.exceptions import ActorUnavailableError, OutOfMemoryError, RayActorError, RayError, WorkerCrashedError

        try:
            return ray.get(handle, timeout=timeout)
        except ActorUnavailableError as exc:
            raise WorkerUnavailable(_first_line(exc)) from exc
        except (RayActorError, WorkerCrashedError, OutOfMemoryError) as exc:
            raise WorkerLost(_first_line(exc)) from exc
        except RayError as exc:
            raise CallFailed(_first_line(exc)) from exc

    def kill(self, actor: Any) -> None:
        """End an actor for good (its replacement is a new actor); calls in flight on it fail."""
        import ray

        ray.kill(actor, no_restart=True)

    def cluster_cpus(self) -> float:
        import ray

        return float(ray.cluster_resources().get("CPU", 1.0))

    def shutdown(self) -> None:
        import ray

        ray.shutdown()


@dataclass(eq=False)
class _Done:
    value: Any = None
    error: BaseException | None = None


class LocalRuntime:
    """Runs each call at once, in this process, on plain objects (tools and tests that need no cluster).

    Nothing can be killed here, so time budgets are not enforced; memory budgets are (inside the worker).
    """

    def spawn(self, cls: type, *args: Any, num_cpus: float, **kwargs: Any) -> Any:
        return cls(*args, **kwargs)

    def call(self, actor: Any, method: str, *args: Any) -> _Done:
        try:
            return _Done(value=getattr(actor, method)(*args))
        except WorkerLost as exc:
            return _Done(error=exc)
        except Exception as exc:
            return _Done(error=CallFailed(f"{type(exc).__name__}: {exc}"))

    def ready(self, handles: list[Any], timeout: float) -> list[Any]:
        return list(handles)

    def result(self, handle: _Done, timeout: float | None = None) -> Any:
        if handle.error is not None:
            raise handle.error
        return handle.value

    def kill(self, actor: Any) -> None:
        """Local objects hold no process of their own; the dispatcher replaces them."""

    def cluster_cpus(self) -> float:
        return float(os.cpu_count() or 1)

    def shutdown(self) -> None:
        """Nothing to let go of."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
