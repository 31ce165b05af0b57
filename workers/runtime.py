"""Ray start-up, and the runtime seam the dispatcher calls actors through.

`init_ray` starts a local Ray on the embedded stack, or joins the cluster that `ray_address` names.
`RayRuntime` calls Ray actors and turns Ray's failures into `WorkerLost` (the worker died),
`WorkerUnavailable` (it is restarting) and `CallFailed`; `LocalRuntime` runs the same calls in-process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

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


class RayRuntime:
    """Calls on Ray actors: a call returns an ObjectRef; results and failures come back through `result`."""

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


@dataclass(eq=False)
class _Done:
    value: Any = None
    error: BaseException | None = None


class LocalRuntime:
    """Runs each call at once, in this process, on plain objects (tools and tests that need no cluster).

    Nothing can be killed here, so time budgets are not enforced; memory budgets are (inside the worker).
    """

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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
