"""Ray start-up: a local Ray on the embedded stack, or the cluster that `ray_address` names."""

from __future__ import annotations

import logging
import os

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
