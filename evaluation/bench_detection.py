"""Benchmark of COCO object detection (YOLOv8n): onnxruntime directly against ultralytics, and the analyzer.

    python -m evaluation.bench_detection [--runs N] [--warmup K] [--block B] [--out PATH]

The input is a 1920x1080 photo: ultralytics' bus.jpg (810x1080) letterboxed onto a 1080p grey canvas with
Pillow and saved as a JPEG. In one process, side by side: after K untimed runs of each, every contender runs
B times in a row, then the next one, round after round until each has N timed runs. Blocks keep a worker's
steady state (its weights warm in the caches, as in an actor that runs one model), and the rounds spread
load changes on the machine over all contenders alike. The contenders:

* `YoloOnnxDetector` with 1 and with 2 onnxruntime intra-op threads;
* `YoloUltralyticsDetector`: the same ONNX file through `ultralytics.YOLO`, torch and its onnxruntime session
  on 1 thread;
* `ObjectsAnalyzer.analyze` on an `EvidenceFile` of the JPEG (decode, detection, crops), default backend,
  1 thread.

Detector timings start from the decoded RGB pixels (letterbox, inference, NMS, box mapping). It also records
each contender's load time, the peak RSS of this process after loading everything, and the peak RSS of a
fresh worker process that loads only one backend (what one Ray actor costs). Results go to
`evaluation/results/detection.json` unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from evaluation.common import RESULTS, describe, locard_commit, machine_info
from models.yolo import YoloDetector, YoloOnnxDetector, YoloUltralyticsDetector
from storage.media import SNIFF_BYTES, sniff_media_type
from workers.analyzers.base import AnalysisLimits, EvidenceFile
from workers.analyzers.objects import DEFAULT_BACKEND, ObjectsAnalyzer
from workers.imaging import load_frames

DEFAULT_OUT = RESULTS / "detection.json"
FULL_HD = (1920, 1080)
TARGET_MS = 120.0
# The child reports VmHWM (peak RSS of its own address space): ru_maxrss would carry the parent's peak
# over fork and exec.
CHILD_CODE = """
import sys
import numpy as np
from models.yolo import YoloOnnxDetector, YoloUltralyticsDetector
detector = {"onnxruntime": YoloOnnxDetector, "ultralytics": YoloUltralyticsDetector}[sys.argv[1]]()
detector.load()
detector.predict(np.zeros((1080, 1920, 3), np.uint8))
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(int(status.split()[0]))
"""


def bus_jpg() -> Path:
    """ultralytics' bus.jpg, found without importing ultralytics."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        raise RuntimeError("ultralytics is not installed: it ships the bus.jpg photo this benchmark uses")
    return Path(spec.origin).parent / "assets" / "bus.jpg"


def full_hd_photo(path: Path) -> Path:
    """bus.jpg letterboxed (aspect kept, grey bars) onto a 1920x1080 canvas, saved as a JPEG."""
    with Image.open(bus_jpg()) as source:
        photo = source.convert("RGB")
    scale = min(FULL_HD[0] / photo.width, FULL_HD[1] / photo.height)
    resized = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", FULL_HD, (114, 114, 114))
    canvas.paste(resized, ((FULL_HD[0] - resized.width) // 2, (FULL_HD[1] - resized.height) // 2))
    canvas.save(path, "JPEG", quality=92)
    return path


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def worker_rss_mib(backend: str) -> float:
    """Peak RSS of a fresh process that loads one backend and detects once: one worker's footprint."""
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}
    done = subprocess.run([sys.executable, "-c", CHILD_CODE, backend], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1], env=env, timeout=300)
    return round(int(done.stdout.strip().splitlines()[-1]) / 1024, 1)


def evidence_file(path: Path) -> EvidenceFile:
    """The EvidenceFile a worker would hand the analyzer: SHA-256 and the media type sniffed from content."""
    data = path.read_bytes()
    return EvidenceFile(evidence_id=f"bench-{path.stem}", path=path, sha256=hashlib.sha256(data).hexdigest(),
                        size=len(data), media_type=sniff_media_type(data[:SNIFF_BYTES]), filename=path.name)


def timed_load(load: Callable[[], None]) -> float:
    started = time.perf_counter()
    load()
    return round(time.perf_counter() - started, 2)


def run(runs: int, warmup: int, block: int, out: Path) -> dict[str, Any]:
    """Measure every contender side by side and write the results to `out`."""
    with tempfile.TemporaryDirectory(prefix="bench-detection-") as folder:
        photo = full_hd_photo(Path(folder) / "bus-1080p.jpg")
        item = evidence_file(photo)
        limits = AnalysisLimits()
        pixels = load_frames(photo, limits.max_image_pixels)[0].pixels
        detectors: dict[str, YoloDetector] = {
            "onnxruntime_1_thread": YoloOnnxDetector(intra_op_num_threads=1),
            "onnxruntime_2_threads": YoloOnnxDetector(intra_op_num_threads=2),
            "ultralytics_1_thread": YoloUltralyticsDetector(intra_op_num_threads=1),
        }
        analyzer = ObjectsAnalyzer(threads=1)
        load_seconds = {name: timed_load(detector.load) for name, detector in detectors.items()}
        load_seconds["analyzer_end_to_end"] = timed_load(analyzer.load)
        rss_after_load = peak_rss_mib()
        contenders: dict[str, Callable[[], Any]] = {
            **{name: functools.partial(detector.predict, pixels) for name, detector in detectors.items()},
            "analyzer_end_to_end": lambda: analyzer.analyze(item, limits),
        }
        for call in contenders.values():
            for _ in range(warmup):
                call()
        timings: dict[str, list[float]] = {name: [] for name in contenders}
        while any(len(values) < runs for values in timings.values()):
            for name, call in contenders.items():
                for _ in range(min(block, runs - len(timings[name]))):
                    started = time.perf_counter()
                    call()
                    timings[name].append((time.perf_counter() - started) * 1000)
        detections = {name: sorted(d.label for d in detector.predict(pixels)) for name, detector in detectors.items()}
        findings = analyzer.analyze(item, limits)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    ratio = medians["onnxruntime_1_thread"] / medians["ultralytics_1_thread"]
    results: dict[str, Any] = {
        "benchmark": "detection",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "locard": locard_commit(),
        "machine": {**machine_info(), "load_average": [round(v, 2) for v in os.getloadavg()]},
        "model": detectors["onnxruntime_1_thread"].provenance(),
        "input": {"image": "ultralytics bus.jpg letterboxed to 1920x1080 (JPEG q92)", "size": list(FULL_HD)},
        "runs": runs, "warmup_runs": warmup, "block": block,
        "ms_per_image": {name: describe(values) for name, values in timings.items()},
        "ratio_onnxruntime_to_ultralytics": round(ratio, 3),
        "load_seconds": load_seconds,
        "peak_rss_mib_after_loading_all": rss_after_load,
        "peak_rss_mib_one_worker": {backend: worker_rss_mib(backend)
                                    for backend in ("onnxruntime", "ultralytics")},
        "detections": {**detections, "analyzer_findings": len(findings),
                       "analyzer_crops": sum(len(f.artifacts) for f in findings)},
        "target_ms_one_core": TARGET_MS,
        "meets_target_one_core": medians["onnxruntime_1_thread"] <= TARGET_MS,
        "analyzer_default_backend": DEFAULT_BACKEND,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def summary(results: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [f"YOLOv8n COCO on a 1920x1080 photo, {results['runs']} runs "
             f"(load average {results['machine']['load_average'][0]}):"]
    for name, stats in results["ms_per_image"].items():
        lines.append(f"  {name:<24} median {stats['p50']:>7.1f} ms   p95 {stats['p95']:>7.1f} ms   "
                     f"load {results['load_seconds'][name]:.2f} s")
    workers = results["peak_rss_mib_one_worker"]
    lines += [f"  onnxruntime / ultralytics (1 thread): {results['ratio_onnxruntime_to_ultralytics']:.3f}",
              f"  peak RSS: {results['peak_rss_mib_after_loading_all']} MiB with everything loaded; one worker "
              f"{workers['onnxruntime']} MiB (onnxruntime), {workers['ultralytics']} MiB (ultralytics)",
              f"  target {results['target_ms_one_core']:.0f} ms on one core: "
              f"{'met' if results['meets_target_one_core'] else 'NOT met'}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs of each contender (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs of each first (default 5)")
    parser.add_argument("--block", type=int, default=5, help="runs in a row before the next contender (default 5)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.block < 1:
        parser.error("--runs and --block must be at least 1, --warmup at least 0")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    print(summary(run(args.runs, args.warmup, args.block, args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
