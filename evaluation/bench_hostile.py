"""Benchmark of the large hostile files (tests/hostile_files.py) through every analyzer the planner runs on them.

    python -m evaluation.bench_hostile [--only NAME ...] [--analyzers NAME ...] [--out PATH]

The files: a 100-megapixel all-black PNG (decoded: under the 120 Mpx limit), the same cut after 50 rows, a
900-megapixel PNG (refused undecoded), a JPEG whose header claims 10,000 x 10,000 pixels, a flat 10,900 x 11,000
RGB PNG (~100 KB; 360 MB decoded), a PDF whose content stream inflates to 300 MB, 1,000-page PDFs (blank, and
with text layers) and an 87-megapixel photo. Per file and analyzer: the outcome (succeeded, refused with the
reason, or error), seconds, and the peak resident memory the run added (VmHWM, reset before each run); then
median and worst per analyzer and over all runs. All analyzers are loaded once in this process, one CPU thread.
Results (JSON) go to `evaluation/results/hostile.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import statistics
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evaluation.common import RESULTS, locard_commit, machine_info
from tests.hostile_files import (
    HostileFile,
    encode,
    flate_bomb_pdf,
    grey_png_idat,
    page_objects,
    patch_jpeg_size,
    pdf_from_objects,
    png_bytes,
    real_photo,
)
from tests.hostile_runner import Outcome, evidence_for, load_analyzers, run_file
from tests.media_samples import bus_jpg_path, text_layer_pdf
from workers.analyzers.base import AnalysisLimits

DEFAULT_OUT = RESULTS / "hostile.json"
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                 "OMP_THREAD_LIMIT": "1", "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}


def write_large_corpus(directory: Path) -> list[HostileFile]:
    """The large hostile files, written to `directory`; returned with empty `data` (read them from disk)."""
    directory.mkdir(parents=True, exist_ok=True)
    made: list[HostileFile] = []

    def put(name: str, family: str, data: bytes, kind: str | None = None) -> None:
        (directory / name).write_bytes(data)
        made.append(HostileFile(name, b"", family, kind))

    put("bomb-100mpx-grey.png", "bomb", png_bytes(10_000, 10_000, grey_png_idat(10_000, 10_000)))
    put("bomb-100mpx-truncated.png", "bomb", png_bytes(10_000, 10_000, grey_png_idat(10_000, 50)))
    put("bomb-900mpx.png", "bomb", png_bytes(30_000, 30_000, grey_png_idat(30_000, 30_000)))
    put("bomb-100mpx-declared.jpg", "bomb", patch_jpeg_size(bus_jpg_path().read_bytes(), 10_000, 10_000))
    put("flat-10900x11000.png", "large-png", _large_flat_png())
    put("inflate-300mb.pdf", "bomb", flate_bomb_pdf(300 << 20))
    put("1000-blank-pages.pdf", "pdf-pages", pdf_from_objects(page_objects(1000, media_box=b"[0 0 595 842]")))
    put("1000-text-pages.pdf", "pdf-pages", text_layer_pdf([[f"Pagina {n}: verhoor."] for n in range(1, 1001)]))
    big = Image.open(bus_jpg_path()).resize((8100, 10800), Image.Resampling.BICUBIC)
    put("photo-87mpx.jpg", "large-photo", encode(big, "JPEG", quality=90))
    return made


def _large_flat_png() -> bytes:
    """A 10,900 x 11,000 RGB PNG of a real photo's colours in large flat blocks (~100 KB; 360 MB decoded)."""
    width, height, block = 10_900, 11_000, 1_000
    small = np.asarray(real_photo(12).convert("RGB"))
    compressor = zlib.compressobj(9)
    chunks = []
    for y in range(height):
        colours = small[min(y // block, 11)]
        row = np.repeat(colours[: width // block + 1], block, axis=0)[:width]
        chunks.append(compressor.compress(b"\x00" + row.tobytes()))
    idat = b"".join(chunks) + compressor.flush()
    return png_bytes(width, height, idat, mode=2)


def _summary(outcomes: list[Outcome]) -> dict[str, Any]:
    seconds = [outcome.seconds for outcome in outcomes]
    memory = [outcome.peak_mb for outcome in outcomes]
    worst = max(outcomes, key=lambda outcome: outcome.seconds)
    return {"runs": len(outcomes), "median_seconds": round(statistics.median(seconds), 3),
            "worst_seconds": round(max(seconds), 3), "worst_seconds_run": worst.analyzer,
            "median_peak_mb": round(statistics.median(memory), 1), "worst_peak_mb": round(max(memory), 1),
            "outcomes": {status: sum(1 for o in outcomes if o.status == status)
                         for status in ("succeeded", "refused", "error")}}


def run(only: list[str] | None, names: list[str] | None) -> dict[str, Any]:
    for key, value in SINGLE_THREAD.items():
        os.environ.setdefault(key, value)
    started = time.perf_counter()
    analyzers = load_analyzers(names)
    load_seconds = time.perf_counter() - started
    files: list[dict[str, Any]] = []
    every: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="locard-hostile-") as folder:
        made = time.perf_counter()
        corpus = write_large_corpus(Path(folder))
        generate_seconds = time.perf_counter() - made
        for hostile in corpus:
            if only and hostile.name not in only:
                continue
            path = Path(folder) / hostile.name
            item = evidence_for(path, declared_kind=hostile.declared_kind)
            outcomes = run_file(analyzers, item, AnalysisLimits())
            every.extend(outcomes)
            files.append({"name": hostile.name, "family": hostile.family, "bytes": item.size,
                          "media_type": item.media_type, "runs": [dataclasses.asdict(o) for o in outcomes],
                          "total_seconds": round(sum(o.seconds for o in outcomes), 3)})
            print(f"{hostile.name}: " + ", ".join(f"{o.analyzer} {o.status} {o.seconds:.2f}s {o.peak_mb:.0f}MB"
                                                  for o in outcomes), flush=True)
    by_analyzer = {name: _summary([o for o in every if o.analyzer == name])
                   for name in sorted({o.analyzer for o in every})}
    return {"benchmark": "hostile", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine_info(), **locard_commit(), "threads": 1, "limits": dataclasses.asdict(AnalysisLimits()),
            "load_seconds": round(load_seconds, 1), "generate_seconds": round(generate_seconds, 1),
            "overall": _summary(every) if every else {}, "by_analyzer": by_analyzer, "files": files,
            "errors": [f"{f['name']}: {r['analyzer']}: {r['detail']}" for f in files for r in f["runs"]
                       if r["status"] == "error"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="file names to run (default: all)")
    parser.add_argument("--analyzers", nargs="*", help="analyzer names (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    result = run(args.only, args.analyzers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"overall": result["overall"], "by_analyzer": result["by_analyzer"],
                      "errors": result["errors"]}, indent=2))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
