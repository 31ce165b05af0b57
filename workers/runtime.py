"""Ray start-up: a local Ray on the embedded stack, or the cluster that `ray_address` names."""

from __future__ import annotations

import logging
import os

from storage.settings import Settings


def ray_environment(settings: Settings) -> dict[str, str]:
    """The environment every Ray command of this deployment must share."""
    return {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": settings.ray_auth_mode}


def init_ray(settings: Settings) -> None:
    """Connect to the configured cluster, or start a local Ray sized for this machine."""
    import ray

    os.environ.update(ray_environment(settings))
    if ray.is_initialized():
        return
    if settings.ray_address:
        ray.init(address=settings.ray_address, logging_level=logging.WARNING, log_to_driver=False)
        return
    ray.init(num_cpus=settings.ray_num_cpus or os.cpu_count() or 1, include_dashboard=False,
             object_store_memory=200 * 1024 * 1024, logging_level=logging.WARNING, log_to_driver=False,
             runtime_env={"env_vars": ray_environment(settings)})
