"""The worker service: `python -m workers.service` runs the dispatcher and its Ray actors until stopped."""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable
from typing import Any

from storage import checkpoints
from storage.db import make_engine, migrate, session_factory
from storage.objectstore import S3ObjectStore
from storage.settings import Settings, get_settings
from workers import delivery
from workers.analyzers import registry
from workers.analyzers.base import Analyzer
from workers.dispatcher import Dispatcher
from workers.runtime import RayRuntime, Runtime, init_ray

log = logging.getLogger("locard.workers")


MATCHER_CPUS = 0.25


def matcher_cpus(cluster_cpus: float) -> float:
    """One matcher actor's CPU reservation (a tenth of a cluster smaller than 2.5 CPUs)."""
    return min(MATCHER_CPUS, cluster_cpus / 10)


def cpu_shares(analyzers: dict[str, type[Analyzer]], cluster_cpus: float,
               actors_per_analyzer: int = 1, reserved: float = 0.0) -> dict[str, float]:
    """The CPU reservation of each analyzer's actors, scaled down so that every actor fits in the cluster.

    Actors hold their reservation for life; on a small machine the analyzers' nominal needs add up to more
    than it has, and an actor that cannot be placed would leave its jobs waiting for ever. `reserved` is
    kept free for other actors (the matchers).
    """
    wanted = sum(cls.num_cpus for cls in analyzers.values()) * actors_per_analyzer
    available = max(cluster_cpus - reserved, 0.0)
    scale = min(1.0, available / wanted) if wanted > 0 else 1.0
    return {name: math.floor(cls.num_cpus * scale * 10_000) / 10_000 for name, cls in analyzers.items()}


def ray_actor_factory(settings: Settings, analyzers: dict[str, type[Analyzer]], actors_per_analyzer: int = 1,
                      *, runtime: Runtime | None = None) -> Callable[[str], Any]:
    """Start analyzer actors on the runtime (Ray by default); each loads its models once, restarted if it dies."""
    from workers.actor import AnalyzerWorker

    runtime = runtime if runtime is not None else RayRuntime()
    cluster = runtime.cluster_cpus()
    reserved = matcher_cpus(cluster) * settings.matcher_actors
    shares = cpu_shares(analyzers, cluster, actors_per_analyzer, reserved=reserved)
    return lambda name: runtime.spawn(AnalyzerWorker, name, settings, num_cpus=shares[name])


def ray_matcher_factory(settings: Settings, *, fingerprints: bool = True,
                        runtime: Runtime | None = None) -> Callable[[], Any]:
    """Start a matcher actor (it holds the indexes, and the 1:N index of every print where `fingerprints` are
    analysed; the runtime restarts it if it dies)."""
    from workers.matcher_worker import MatcherWorker

    runtime = runtime if runtime is not None else RayRuntime()
    share = math.floor(matcher_cpus(runtime.cluster_cpus()) * 10_000) / 10_000
    return lambda: runtime.spawn(MatcherWorker, settings, fingerprints=fingerprints, num_cpus=share)


def build_dispatcher(settings: Settings, *, actors_per_analyzer: int = 1) -> Dispatcher:
    """Connect to the record store, object store and Ray, and start the analyzer actors."""
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    store = S3ObjectStore.from_settings(settings)
    store.ensure_buckets()
    analyzers = registry.select(settings.analyzer_names)
    init_ray(settings)
    runtime = RayRuntime()
    matcher = ray_matcher_factory(settings, fingerprints="fingerprints" in analyzers, runtime=runtime)
    return Dispatcher(settings, session_factory(engine, chain_key=settings.chain_key), store, analyzers,
                      actor_factory=ray_actor_factory(settings, analyzers, actors_per_analyzer, runtime=runtime),
                      actors_per_analyzer=actors_per_analyzer, matcher_factory=matcher, runtime=runtime)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    dispatcher = build_dispatcher(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Signed checkpoints of the audit and custody chain heads, outside the record store (storage.checkpoints).
    checkpoints.start_periodic(settings, dispatcher.factory, dispatcher.store, stop)
    # Webhook deliveries from the durable outbox (workers.delivery); loopback receivers only outside production.
    deliveries = delivery.start(dispatcher.factory, stop, allow_loopback=settings.environment != "production")
    try:
        dispatcher.warm_up()
        dispatcher.run(stop)
    finally:
        stop.set()
        deliveries.join(timeout=30)
        dispatcher.drain(timeout=10)
        dispatcher.runtime.shutdown()
        log.info("worker service stopped")


if __name__ == "__main__":
    main()
