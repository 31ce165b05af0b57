"""Benchmark of intake and analysis on the embedded stack: upload-to-first-finding latency and throughput.

    python -m evaluation.bench_ingest [--items N] [--out PATH] [--latency-items K] [--keep-home]

It starts its own embedded stack (SeaweedFS, SQLite, the worker service on a local Ray, the API) in a fresh
temporary `LOCARD_HOME`, so it never touches the user's stack, and talks to it only over HTTP, as any case
system would. The evidence is N distinct JPEGs made from real photos that ship inside installed packages
(ultralytics assets, scikit-image data): each is re-encoded with its own JPEG quality, crop and scale, so no
two share a SHA-256 and every upload is a new evidence item.

Two phases:

* latency: the first K items are uploaded one at a time; for each, the time from just before the upload POST
  until `GET /evidence/{id}/findings` first returns a finding (polled every 50 ms). The next item is only
  uploaded once the previous one's analysis is done, so the figure holds no queueing.
* throughput: the remaining items are uploaded back to back by 4 concurrent uploaders; items/s until every
  POST has returned (upload + intake), and until every item's analysis state is "done" (end to end).

The results (JSON) go to `evaluation/results/ingest.json` unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import io
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from evaluation.common import describe, locard_commit, machine_info, percentile
from evaluation.private_stack import private_stack
from locard.stack import StackError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ingest.json"
DEFAULT_ITEMS = 60
DEFAULT_LATENCY_ITEMS = 20
UPLOADERS = 4
POLL_SECONDS = 0.05
MAX_SIDE = 1280
# Real photographs bundled with scikit-image (graphics, masks and scans are left out on purpose).
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png",
                  "motorcycle_left.png", "hubble_deep_field.jpg", "coins.png")
JPEG_QUALITIES = (92, 86, 80, 74)

Say = Callable[[str], None]


class BenchmarkError(RuntimeError):
    """The benchmark could not complete (an API error, or analysis that never finished)."""


# -- pure helpers (tested without the stack) ----------------------------------------------------------


def source_photos() -> list[Path]:
    """Real photos shipped inside installed packages: ultralytics' assets and scikit-image's data."""
    candidates: list[Path] = []
    # Located without importing them: importing ultralytics alone takes seconds.
    for package, folder, names in (("ultralytics", "assets", ("bus.jpg", "zidane.jpg")),
                                   ("skimage", "data", SKIMAGE_PHOTOS)):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            candidates += [Path(spec.origin).parent / folder / name for name in names]
    return [path for path in candidates if path.is_file()]


def _variant(image: Any, variant: int, quality_bump: int) -> bytes:
    """JPEG bytes of one variant of an image: `variant` columns cropped off, its own quality, some scaled."""
    from PIL import Image

    width, height = image.size
    crop = min(variant, width // 4)
    out = image.crop((0, 0, width - crop, height)) if crop else image
    if variant % 3 == 2:
        out = out.resize((max(1, round(out.width * 0.9)), max(1, round(out.height * 0.9))), Image.Resampling.LANCZOS)
    quality = JPEG_QUALITIES[variant % len(JPEG_QUALITIES)] - quality_bump
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG", quality=max(10, quality))
    return buffer.getvalue()


def make_distinct_images(sources: Sequence[Path], count: int, out_dir: Path) -> list[Path]:
    """Write `count` JPEGs, all with different SHA-256s, by re-encoding, cropping and resizing the sources.

    Item i comes from source i mod len(sources), in variant i // len(sources): variant v has v pixel columns
    cropped off the right edge (so sizes differ), a JPEG quality of its own, and every third one is scaled to
    90%. Should two encodings still collide, the quality is nudged until they do not.
    """
    from PIL import Image, ImageOps

    if not sources:
        raise ValueError("no source photos to make evidence from")
    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for source in sources:
        with Image.open(source) as opened:
            image = ImageOps.exif_transpose(opened)
            image = image.convert("L" if image.mode in ("L", "I", "I;16", "1") else "RGB")
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            images.append(image)
    seen: set[str] = set()
    paths: list[Path] = []
    for index in range(count):
        slot = index % len(sources)
        variant = index // len(sources)
        for bump in range(50):
            data = _variant(images[slot], variant, bump)
            digest = hashlib.sha256(data).hexdigest()
            if digest not in seen:
                break
        else:  # pragma: no cover - fifty qualities cannot all collide
            raise RuntimeError(f"could not make item {index} distinct")
        seen.add(digest)
        path = out_dir / f"{index:04d}-{sources[slot].stem}-v{variant}.jpg"
        path.write_bytes(data)
        paths.append(path)
    return paths


def parse_time(value: str) -> dt.datetime:
    """An API timestamp as an aware datetime (a naive one, as SQLite hands back, is taken as UTC)."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def analyzer_durations(statuses: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per analyzer: run count, failed count, median and p95 of `duration_ms` over the succeeded runs."""
    durations: dict[str, list[float]] = {}
    counts: dict[str, dict[str, int]] = {}
    for status in statuses:
        for run in status["runs"]:
            count = counts.setdefault(run["analyzer"], {"runs": 0, "failed": 0})
            count["runs"] += 1
            if run["status"] == "failed":
                count["failed"] += 1
            elif run.get("duration_ms") is not None:
                durations.setdefault(run["analyzer"], []).append(float(run["duration_ms"]))
    result: dict[str, dict[str, Any]] = {}
    for name in sorted(counts):
        values = durations.get(name, [])
        result[name] = {**counts[name],
                        "median_ms": round(statistics.median(values), 1) if values else None,
                        "p95_ms": round(percentile(values, 95), 1) if values else None}
    return result


# -- talking to the API -------------------------------------------------------------------------------


def _json(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise BenchmarkError(f"{response.request.method} {response.request.url.path} → "
                             f"{response.status_code}: {response.text[:300]}")
    return response.json()


@dataclass
class Item:
    """One evidence file and what happened to it."""

    path: Path
    data: bytes
    evidence_id: str = ""
    upload_ms: float = 0.0


class Api:
    """The few calls of the case API the benchmark makes; safe to share between threads (httpx.Client is)."""

    def __init__(self, base_url: str, *, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=f"{base_url}/api/v1", timeout=60.0,
                                 limits=httpx.Limits(max_connections=UPLOADERS + 4))
        token = _json(self.http.post("/auth/token", data={"grant_type": "password", "username": username,
                                                          "password": password}))["access_token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.http.close()

    def create_case(self, reference: str, title: str) -> str:
        return str(_json(self.http.post("/cases", json={"reference": reference, "title": title}))["id"])

    def upload(self, case_id: str, item: Item) -> str:
        files = {"file": (item.path.name, item.data, "image/jpeg")}
        result = _json(self.http.post(f"/cases/{case_id}/evidence", files=files))
        if not result["created"]:
            raise BenchmarkError(f"{item.path.name} was already held: the evidence files are not distinct")
        return str(result["evidence"]["id"])

    def findings(self, evidence_id: str) -> list[dict[str, Any]]:
        return list(_json(self.http.get(f"/evidence/{evidence_id}/findings")))

    def analysis(self, evidence_id: str) -> dict[str, Any]:
        return dict(_json(self.http.get(f"/evidence/{evidence_id}/analysis")))


def _finished(status: dict[str, Any]) -> bool:
    return status["state"] == "done" and bool(status["jobs"])


def _wait_done(api: Api, evidence_id: str, deadline: float) -> dict[str, Any]:
    while True:
        status = api.analysis(evidence_id)
        if _finished(status):
            return status
        if time.monotonic() > deadline:
            raise BenchmarkError(f"evidence {evidence_id} was not analysed in time (state {status['state']})")
        time.sleep(POLL_SECONDS)


def measure_latency(api: Api, case_id: str, items: Sequence[Item], timeout: float,
                    say: Say) -> tuple[list[float], list[float], dict[str, dict[str, Any]]]:
    """Upload items one at a time: upload-to-first-finding and upload-to-done latency (ms) of each."""
    first_finding: list[float] = []
    all_done: list[float] = []
    statuses: dict[str, dict[str, Any]] = {}
    for number, item in enumerate(items, 1):
        start = time.perf_counter()
        item.evidence_id = api.upload(case_id, item)
        item.upload_ms = (time.perf_counter() - start) * 1000
        deadline = time.monotonic() + timeout
        while not api.findings(item.evidence_id):
            if time.monotonic() > deadline:
                raise BenchmarkError(f"no finding for {item.path.name} within {timeout:.0f}s")
            time.sleep(POLL_SECONDS)
        first_finding.append((time.perf_counter() - start) * 1000)
        statuses[item.evidence_id] = _wait_done(api, item.evidence_id, deadline)
        all_done.append((time.perf_counter() - start) * 1000)
        if number % 5 == 0 or number == len(items):
            say(f"  latency: {number}/{len(items)} (last: first finding {first_finding[-1]:.0f} ms)")
    return first_finding, all_done, statuses


def measure_throughput(api: Api, case_id: str, items: Sequence[Item], timeout: float,
                       say: Say) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Upload items with 4 concurrent uploaders, then wait until every item's analysis is done."""
    wall_start = dt.datetime.now(dt.UTC)
    start = time.perf_counter()

    def upload(item: Item) -> None:
        began = time.perf_counter()
        item.evidence_id = api.upload(case_id, item)
        item.upload_ms = (time.perf_counter() - began) * 1000

    with ThreadPoolExecutor(max_workers=UPLOADERS) as pool:
        list(pool.map(upload, items))
    uploaded_s = time.perf_counter() - start
    say(f"  throughput: {len(items)} uploads returned in {uploaded_s:.1f}s; waiting for analysis ...")
    deadline = time.monotonic() + timeout
    pending = [item.evidence_id for item in items]
    statuses: dict[str, dict[str, Any]] = {}
    while pending:
        for evidence_id in list(pending):
            statuses[evidence_id] = api.analysis(evidence_id)
            if _finished(statuses[evidence_id]):
                pending.remove(evidence_id)
        if pending:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{len(pending)} item(s) were not analysed within {timeout:.0f}s")
            time.sleep(POLL_SECONDS)
    done_s = time.perf_counter() - start
    finishes = [parse_time(run["finished_at"]) for status in statuses.values() for run in status["runs"]]
    last_run_s = (max(finishes) - wall_start).total_seconds() if finishes else None
    result = {
        "items": len(items), "concurrent_uploads": UPLOADERS,
        "upload_intake_seconds": round(uploaded_s, 3),
        "upload_intake_items_per_s": round(len(items) / uploaded_s, 2),
        "end_to_end_seconds": round(done_s, 3),
        "end_to_end_items_per_s": round(len(items) / done_s, 2),
        # From the runs' own finished_at stamps: free of the polling's granularity.
        "last_run_finished_seconds": round(last_run_s, 3) if last_run_s is not None else None,
        "upload_ms": describe([item.upload_ms for item in items]),
    }
    return result, statuses


# -- the run ------------------------------------------------------------------------------------------


def run_benchmark(items: int, latency_items: int, say: Say, *, keep_home: bool = False,
                  timeout: float = 150.0) -> dict[str, Any]:
    """Start a private embedded stack, run both phases, stop the stack; returns the results."""
    if items < 2:
        raise ValueError("--items must be at least 2")
    latency_items = max(1, min(latency_items, items - 1))
    started_at = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    with private_stack(say, keep_home=keep_home) as bench:
        sources = source_photos()
        # One extra item warms the analyzer actors up (its latency is reported on its own).
        paths = make_distinct_images(sources, items + 1, bench.work)
        evidence = [Item(path=path, data=path.read_bytes()) for path in paths]
        say(f"Made {len(evidence)} distinct JPEGs from {len(sources)} photos "
            f"({sum(len(i.data) for i in evidence) / 1e6:.1f} MB) in {bench.work}")
        up_clock = time.perf_counter()
        state = bench.stack.up(say)
        up_seconds = time.perf_counter() - up_clock
        api = Api(state.api_url, username=state.operator, password=state.operator_password)
        try:
            case_id = api.create_case(f"BENCH-{started_at:%Y%m%d%H%M%S}", "Locard ingest benchmark")
            warm, sequential, bulk = evidence[0], evidence[1:latency_items + 1], evidence[latency_items + 1:]
            say("Warm-up item ...")
            warm_first, warm_done, warm_status = measure_latency(api, case_id, [warm], timeout, say=lambda _: None)
            say(f"Latency: {len(sequential)} items one at a time ...")
            first, done, latency_status = measure_latency(api, case_id, sequential, timeout, say)
            say(f"Throughput: {len(bulk)} items, {UPLOADERS} concurrent uploads ...")
            throughput, bulk_status = measure_throughput(api, case_id, bulk, timeout, say)
        finally:
            api.close()
        statuses = {**warm_status, **latency_status, **bulk_status}
        runs = [run for status in statuses.values() for run in status["runs"]]
        failed = [{"evidence_id": status["evidence_id"], "analyzer": run["analyzer"], "error": run["error"]}
                  for status in statuses.values() for run in status["runs"] if run["status"] == "failed"]
        failed_jobs = sum(1 for status in statuses.values() for job in status["jobs"] if job["state"] == "failed")
        bench.keep = bench.keep or bool(failed) or bool(failed_jobs)
        return {
            "benchmark": "ingest",
            "timestamp": started_at.isoformat(timespec="seconds"),
            "locard": locard_commit(),
            "machine": machine_info(),
            "config": {"items": items, "latency_items": len(sequential), "throughput_items": len(bulk),
                       "warmup_items": 1, "concurrent_uploads": UPLOADERS, "poll_ms": POLL_SECONDS * 1000,
                       "sources": [path.name for path in sources]},
            "stack_up_seconds": round(up_seconds, 2),
            "analyzers": sorted({run["analyzer"] for run in runs}),
            "latency": {
                "upload_to_first_finding_ms": describe(first),
                "upload_to_analysis_done_ms": describe(done),
                "upload_ms": describe([item.upload_ms for item in sequential]),
                "warmup_first_finding_ms": round(warm_first[0], 1),
                "warmup_analysis_done_ms": round(warm_done[0], 1),
                "raw_first_finding_ms": [round(value, 1) for value in first],
                "raw_analysis_done_ms": [round(value, 1) for value in done],
            },
            "throughput": throughput,
            "analyzer_duration_ms": analyzer_durations(statuses.values()),
            "runs": len(runs),
            "failed_runs": len(failed),
            "failed_jobs": failed_jobs,
            "failures": failed[:20],
            "total_seconds": round(time.perf_counter() - clock, 1),
        }


def summary(result: dict[str, Any]) -> str:
    """A few lines for a human."""
    latency = result["latency"]["upload_to_first_finding_ms"]
    done = result["latency"]["upload_to_analysis_done_ms"]
    throughput = result["throughput"]
    lines = [
        f"Locard ingest benchmark — {result['config']['items']} items, {result['machine']['cpu_count']} CPUs, "
        f"commit {(result['locard']['commit'] or 'unknown')[:10]}",
        f"  stack up in {result['stack_up_seconds']:.1f}s; analyzers: {', '.join(result['analyzers'])}",
        f"  upload → first finding ({latency['n']} items, sequential): p50 {latency['p50']:.0f} ms, "
        f"p95 {latency['p95']:.0f} ms, min {latency['min']:.0f} ms, max {latency['max']:.0f} ms",
        f"  upload → analysis done: p50 {done['p50']:.0f} ms, p95 {done['p95']:.0f} ms "
        f"(cold first item: {result['latency']['warmup_first_finding_ms']:.0f} ms to a finding)",
        f"  throughput ({throughput['items']} items, {throughput['concurrent_uploads']} uploaders): "
        f"upload+intake {throughput['upload_intake_items_per_s']:.1f} items/s, "
        f"end to end {throughput['end_to_end_items_per_s']:.2f} items/s ({throughput['end_to_end_seconds']:.1f}s)",
        "  analyzer median duration: " + ", ".join(
            f"{name} {row['median_ms']} ms" for name, row in result["analyzer_duration_ms"].items()),
        f"  runs: {result['runs']}, failed: {result['failed_runs']}; total {result['total_seconds']:.0f}s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.bench_ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=DEFAULT_ITEMS, help="evidence items (default %(default)s)")
    parser.add_argument("--latency-items", type=int, default=DEFAULT_LATENCY_ITEMS,
                        help="of those, how many are timed one at a time (default %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results (default %(default)s)")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary LOCARD_HOME and its logs")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        result = run_benchmark(args.items, args.latency_items, say, keep_home=args.keep_home)
    except (BenchmarkError, StackError) as exc:
        say(f"error: {exc}")
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    say("")
    say(summary(result))
    say(f"  results: {args.out}")
    return 0 if result["failed_runs"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
