"""Benchmark of the vision analyzers on a 1080p photo, each in its own Ray actor, and of the whole pipeline.

    python -m evaluation.bench_vision [--runs N] [--images M] [--out PATH]

* per analyzer: load time, then ms per 1080p image (median and p95 of N runs after a warm-up) and the
  actor's peak memory, one actor at a time with one CPU thread, so the figures are per core;
* the whole pipeline: every image analyzer on the same photo in one actor, ms per photo per core;
* scaling: M photos through one pipeline actor, then through two, side by side in one run; the speedup
  is throughput(2) / throughput(1).

The photo is ultralytics' zidane.jpg (two people, real faces) scaled to 1920×1080. Results (JSON) go to
`evaluation/results/vision.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from evaluation.common import RESULTS, describe, locard_commit, machine_info
from storage.media import SNIFF_BYTES, sniff_media_type
from storage.messages import UpstreamFinding
from storage.settings import Settings
from workers.analyzers import registry
from workers.analyzers.base import AnalysisLimits, Analyzer, EvidenceFile
from workers.runtime import init_ray

DEFAULT_OUT = RESULTS / "vision.json"
VISION = ("objects", "plates", "faces", "similarity")
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                 "OMP_THREAD_LIMIT": "1", "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}


def photo_1080p(folder: Path) -> Path:
    """zidane.jpg (a real 1280×720 photo shipped with ultralytics) scaled to 1920×1080."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("ultralytics is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "assets" / "zidane.jpg"
    path = folder / "zidane-1080p.jpg"
    with Image.open(source) as image:
        image.convert("RGB").resize((1920, 1080), Image.Resampling.LANCZOS).save(path, "JPEG", quality=92)
    return path


def evidence_file(path: Path) -> EvidenceFile:
    import hashlib

    data = path.read_bytes()
    return EvidenceFile(evidence_id="bench", path=path, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                        media_type=sniff_media_type(data[:SNIFF_BYTES]), filename=path.name)


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), in MiB."""
    return _status_mib("VmHWM:") or round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_mib() -> float:
    """This process's resident memory now (VmRSS), in MiB."""
    return _status_mib("VmRSS:")


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class BenchWorker:
    """A Ray actor holding some analyzers, loaded once, like production's analyzer actors."""

    def __init__(self, names: list[str]) -> None:
        import sys

        self.load_ms: dict[str, float] = {}
        self.analyzers: dict[str, Analyzer] = {}
        selected = registry.select(names)
        order = sorted(selected, key=lambda n: (len(selected[n].requires), n))  # required ones first
        for name in order:
            start = time.perf_counter()
            analyzer = selected[name]()
            analyzer.load()
            self.load_ms[name] = round((time.perf_counter() - start) * 1000, 1)
            self.analyzers[name] = analyzer
        self.rss_after_load = rss_mib()
        # Upstream findings for analyzers measured without the ones they require (untimed, as in production,
        # where the required analyzer has already run in its own actor).
        needed = {need for a in self.analyzers.values() for need in a.requires if need not in self.analyzers}
        self.helpers: dict[str, Analyzer] = {}
        for name, cls in (registry.select(sorted(needed)) if needed else {}).items():
            self.helpers[name] = cls()
            self.helpers[name].load()
        if "torch" in sys.modules:
            import torch

            torch.set_num_threads(1)
        self.limits = AnalysisLimits()

    def _item(self, path: Path, done: dict[str, list[UpstreamFinding]]) -> EvidenceFile:
        return dataclasses.replace(evidence_file(path), upstream=done)

    def _helper_findings(self, path: Path) -> dict[str, list[UpstreamFinding]]:
        item = evidence_file(path)
        return {name: [finding.as_upstream() for finding in helper.analyze(item, self.limits)]
                for name, helper in self.helpers.items()}

    def _analyze(self, name: str, path: Path, done: dict[str, list[UpstreamFinding]]) -> int:
        analyzer = self.analyzers[name]
        item = self._item(path, {need: done[need] for need in analyzer.requires if need in done})
        findings = analyzer.analyze(item, self.limits)
        done[name] = [f.as_upstream() for f in findings]
        return len(findings)

    def run(self, path: str, runs: int) -> dict[str, Any]:
        """Run every analyzer on the photo (required ones first, their findings passed on): one warm-up, then
        `runs` timed passes."""
        photo = Path(path)
        base = self._helper_findings(photo)
        done = dict(base)
        for name in self.analyzers:
            self._analyze(name, photo, done)
        per_analyzer: dict[str, list[float]] = {name: [] for name in self.analyzers}
        totals: list[float] = []
        findings: dict[str, int] = {}
        for _ in range(runs):
            total = 0.0
            done = dict(base)
            for name in self.analyzers:
                start = time.perf_counter()
                findings[name] = self._analyze(name, photo, done)
                elapsed = (time.perf_counter() - start) * 1000
                per_analyzer[name].append(elapsed)
                total += elapsed
            totals.append(total)
        return {"ms": {name: describe(values) for name, values in per_analyzer.items()},
                "pipeline_ms": describe(totals), "findings": findings, "load_ms": self.load_ms,
                "rss_after_load_mib": self.rss_after_load, "rss_after_runs_mib": rss_mib(),
                "peak_rss_mib": peak_rss_mib(), "pid": os.getpid()}

    def process(self, path: str) -> float:
        photo = Path(path)
        start = time.perf_counter()
        done = self._helper_findings(photo)
        for name in self.analyzers:
            self._analyze(name, photo, done)
        return (time.perf_counter() - start) * 1000


def _actor(names: list[str]) -> Any:
    import ray

    remote = ray.remote(BenchWorker).options(num_cpus=1, runtime_env={"env_vars": SINGLE_THREAD})
    return remote.remote(names)


def throughput(actors: list[Any], path: str, images: int) -> dict[str, float]:
    """Photos per second when `images` photos are spread over the actors."""
    import ray

    ray.get([actor.process.remote(path) for actor in actors])  # all warm
    start = time.perf_counter()
    ray.get([actors[i % len(actors)].process.remote(path) for i in range(images)])
    seconds = time.perf_counter() - start
    return {"actors": len(actors), "images": images, "seconds": round(seconds, 2),
            "images_per_s": round(images / seconds, 3)}


def run_benchmark(runs: int, images: int) -> dict[str, Any]:
    os.environ.update(SINGLE_THREAD)
    init_ray(Settings(_env_file=None, ray_num_cpus=os.cpu_count() or 2))  # type: ignore[call-arg]
    import ray

    available = [name for name, cls in registry.load_all().items() if cls.accepts_media("image/jpeg")]
    vision = [name for name in VISION if name in available]
    result: dict[str, Any] = {"benchmark": "vision", "started_at": dt.datetime.now(dt.UTC).isoformat(),
                              "machine": machine_info(), **locard_commit(), "runs": runs,
                              "photo": "zidane.jpg scaled to 1920x1080", "analyzers": {}}
    with tempfile.TemporaryDirectory(prefix="locard-bench-") as tmp:
        path = str(photo_1080p(Path(tmp)))
        for name in available:  # one actor at a time: per-core figures and per-actor memory
            actor = _actor([name])
            result["analyzers"][name] = ray.get(actor.run.remote(path, runs))
            ray.kill(actor)
        pipeline = _actor(vision)
        result["vision_pipeline"] = {"analyzers": vision, **ray.get(pipeline.run.remote(path, runs))}
        one = throughput([pipeline], path, images)
        second = _actor(vision)
        two = throughput([pipeline, second], path, images)
        result["scaling"] = {"one_actor": one, "two_actors": two,
                             "speedup": round(two["images_per_s"] / one["images_per_s"], 2)}
    ray.shutdown()
    result["targets"] = {
        "objects_ms_per_image_one_core": {"target": 120, "p50": _p50(result, "objects")},
        "vision_pipeline_ms_per_1080p_photo_per_core": {"target": 600,
                                                        "p50": result["vision_pipeline"]["pipeline_ms"]["p50"]},
    }
    return result


def _p50(result: dict[str, Any], name: str) -> float | None:
    entry = result["analyzers"].get(name)
    return entry["ms"][name]["p50"] if entry else None


def summary(result: dict[str, Any]) -> str:
    lines = [f"Locard vision benchmark — {result['photo']}, {result['machine']['cpu_count']} CPUs, "
             f"one thread per actor, {result['runs']} runs"]
    for name, entry in result["analyzers"].items():
        stats = entry["ms"][name]
        lines.append(f"  {name:12s} p50 {stats['p50']:8.1f} ms  p95 {stats['p95']:8.1f} ms  load "
                     f"{entry['load_ms'][name]:7.0f} ms  peak RSS {entry['peak_rss_mib']:7.1f} MiB  "
                     f"findings {entry['findings'][name]}")
    pipe = result["vision_pipeline"]
    lines.append(f"  vision pipeline ({', '.join(pipe['analyzers'])}): p50 {pipe['pipeline_ms']['p50']:.1f} ms per "
                 f"photo per core, peak RSS {pipe['peak_rss_mib']:.1f} MiB")
    scaling = result["scaling"]
    lines.append(f"  scaling: 1 actor {scaling['one_actor']['images_per_s']} photos/s, 2 actors "
                 f"{scaling['two_actors']['images_per_s']} photos/s, speedup {scaling['speedup']}×")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    result = run_benchmark(args.runs, args.images)
    result["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(summary(result))
    print(f"  results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
