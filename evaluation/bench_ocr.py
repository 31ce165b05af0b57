"""Benchmark of the OCR engine layer: Tesseract pages per language and PP-OCR scene text.

    python -m evaluation.bench_ocr [--pages N] [--scene-runs R] [--out PATH]

Inputs are rendered with Pillow and Debian's DejaVu fonts (`tests/text_samples.py`): one running-text page
per language (Dutch, French, German, English, with accents), N variants each (fonts and sizes alternate),
read upright and turned by 90/180/270 degrees; a photo of each page (perspective, uneven light); and
scikit-image's real scanned page against a typed transcription. It records, on one Tesseract thread:

* seconds per page (`read_page`: preparation, OSD, the four-language pass, language identification and
  the single-language pass) and CER per language, clean and rotated (median and max);
* the orientation pass alone, at full size and on the glyph-scaled copy `read_page` uses;
* the second pass: CER and mean word confidence of the four-language and single-language readings of the
  same prepared pages, their times, and how often the kept (more confident) pass has the lower CER;
* photos with and without the lighting flattening;
* `SceneTextReader` milliseconds per photo (ultralytics' bus.jpg with a rendered shop sign).

Results go to `evaluation/results/ocr.json` unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from evaluation.common import REPO_ROOT, RESULTS, describe, locard_commit, machine_info
from models.ocr import DEFAULT_LANGUAGES, TesseractOcr, character_error_rate, prepare_page
from models.scenetext import SceneTextReader

DEFAULT_OUT = RESULTS / "ocr.json"
VARIANTS = (("serif", 34), ("sans", 28), ("serif", 30), ("sans", 34))
SIGN = "BAKKERIJ DE VRIES"
SKIMAGE_PAGE = ("Region-based segmentation\nLet us first determine markers of the coins and the\nbackground. These "
                "markers are pixels that we can label\nunambiguously as either object or background. Here,\nthe "
                "markers are found at the two extreme parts of the\nhistogram of grey values:\n>>> markers = "
                "np.zeros_like(coins)")
T = TypeVar("T")


def _samples() -> Any:
    """tests/text_samples.py (the rendering helpers are shared with the tests)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import tests.text_samples as samples

    return samples


def timed(call: Callable[..., T], *args: Any) -> tuple[T, float]:
    """call(*args) and the seconds it took."""
    started = time.perf_counter()
    result = call(*args)
    return result, time.perf_counter() - started


def summary_of(values: list[float], digits: int = 4) -> dict[str, float | int]:
    return {"n": len(values), "median": round(statistics.median(values), digits), "max": round(max(values), digits),
            "mean": round(statistics.fmean(values), digits)}


def pages(ocr: TesseractOcr, count: int) -> dict[str, Any]:
    """read_page on every language's pages, upright and turned: seconds and CER, plus the orientation found."""
    samples = _samples()
    results: dict[str, Any] = {}
    for language in samples.LANGUAGES:
        seconds: dict[str, list[float]] = {"clean": [], "rotated": []}
        cer: dict[str, list[float]] = {"clean": [], "rotated": []}
        rotations, kept = [], []
        for index in range(count):
            font, size = VARIANTS[index % len(VARIANTS)]
            sample = samples.render_page(language, font=font, size=size)
            degrees = (90, 180, 270)[index % 3]
            for kind, image in (("clean", sample.image), ("rotated", samples.rotate_page(sample.image, degrees))):
                page, elapsed = timed(ocr.read_page, image)
                seconds[kind].append(elapsed)
                cer[kind].append(character_error_rate(sample.text, page.text))
                kept.append(page.kept_run)
                if kind == "rotated":
                    rotations.append({"turned": degrees, "detected": page.rotation,
                                      "confidence": page.orientation_confidence})
        results[language] = {"seconds_per_page": {k: summary_of(v, 2) for k, v in seconds.items()},
                             "cer": {k: summary_of(v) for k, v in cer.items()}, "rotations": rotations,
                             "kept_runs": kept}
    return results


def orientation(ocr: TesseractOcr, count: int) -> dict[str, Any]:
    """The OSD pass alone on prepared pages: full size against the glyph-scaled copy read_page uses."""
    samples = _samples()
    rows: dict[str, list[float]] = {"full_size_s": [], "glyph_scaled_s": []}
    correct = {"full_size": 0, "glyph_scaled": 0}
    total = 0
    for language in samples.LANGUAGES:
        for index in range(count):
            font, size = VARIANTS[index % len(VARIANTS)]
            degrees = (0, 90, 180, 270)[index % 4]
            image = samples.rotate_page(samples.render_page(language, font=font, size=size).image, degrees)
            prepared, frame = prepare_page(image)
            (full_rotation, _), full_s = timed(ocr.detect_orientation, prepared)
            (scaled_rotation, _), scaled_s = timed(ocr.detect_orientation, prepared,
                                                 frame.glyph_height)
            rows["full_size_s"].append(full_s)
            rows["glyph_scaled_s"].append(scaled_s)
            correct["full_size"] += full_rotation == degrees
            correct["glyph_scaled"] += scaled_rotation == degrees
            total += 1
    return {"seconds": {k: summary_of(v, 3) for k, v in rows.items()}, "correct": correct, "pages": total}


def second_pass(ocr: TesseractOcr, count: int) -> dict[str, Any]:
    """Four-language against single-language recognition of the same prepared pages (clean and scanned)."""
    samples = _samples()
    results: dict[str, Any] = {}
    for language in samples.LANGUAGES:
        rows = []
        for index in range(count):
            font, size = VARIANTS[index % len(VARIANTS)]
            sample = samples.render_page(language, font=font, size=size)
            for kind, image in (("clean", sample.image), ("scan", samples.scan_noise(sample.image, seed=index))):
                prepared, _ = prepare_page(image)
                combined, combined_s = timed(ocr.recognise, prepared, DEFAULT_LANGUAGES)
                single, single_s = timed(ocr.recognise, prepared, (language,))
                rows.append({"page": f"{font}-{size}-{kind}",
                             "combined": {"cer": round(character_error_rate(sample.text, combined.text), 4),
                                          "confidence": round(combined.mean_confidence, 4),
                                          "seconds": round(combined_s, 2)},
                             "single": {"cer": round(character_error_rate(sample.text, single.text), 4),
                                        "confidence": round(single.mean_confidence, 4),
                                        "seconds": round(single_s, 2)}})
        results[language] = _second_pass_summary(rows)
    return results


def _second_pass_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    kept_better = 0
    for row in rows:
        single, combined = row["single"], row["combined"]
        kept = single if single["confidence"] > combined["confidence"] else combined
        kept_better += kept["cer"] <= min(single["cer"], combined["cer"])
    return {"pages": rows,
            "median_cer": {k: round(statistics.median(r[k]["cer"] for r in rows), 4) for k in ("combined", "single")},
            "single_lower_cer": sum(r["single"]["cer"] < r["combined"]["cer"] for r in rows),
            "single_higher_cer": sum(r["single"]["cer"] > r["combined"]["cer"] for r in rows),
            "confidence_rule_keeps_the_better_or_equal_pass": kept_better,
            "median_seconds": {k: round(statistics.median(r[k]["seconds"] for r in rows), 2)
                               for k in ("combined", "single")}}


def photos(ocr: TesseractOcr) -> dict[str, Any]:
    """A photo of each language's page, recognised with and without the lighting flattening."""
    samples = _samples()
    results: dict[str, Any] = {}
    for language in samples.LANGUAGES:
        sample = samples.render_page(language, font="serif", size=34)
        photo = samples.document_photo(sample.image, seed=1)
        row = {}
        for name, flatten in (("flattened", True), ("as_given", False)):
            prepared, _ = prepare_page(photo, flatten=flatten)
            recognition = ocr.recognise(prepared, DEFAULT_LANGUAGES)
            row[name] = round(character_error_rate(sample.text, recognition.text), 4)
        page, elapsed = timed(ocr.read_page, photo)
        row["read_page_cer"] = round(character_error_rate(sample.text, page.text), 4)
        row["read_page_seconds"] = round(elapsed, 2)
        results[language] = row
    return results


def real_scan(ocr: TesseractOcr) -> dict[str, Any]:
    """scikit-image's data.page() (a real 384 x 191 scan) against the typed transcription."""
    from skimage import data

    page, elapsed = timed(ocr.read_page, data.page())
    return {"cer": round(character_error_rate(SKIMAGE_PAGE, page.text), 4), "seconds": round(elapsed, 2),
            "language": page.language, "scale": page.extra.get("scale"), "text": page.text}


def scene_text(runs: int) -> dict[str, Any]:
    """SceneTextReader on bus.jpg with a rendered shop sign: load time, ms per photo, what it read."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        return {"skipped": "ultralytics (which ships bus.jpg) is not installed"}
    with Image.open(Path(spec.origin).parent / "assets" / "bus.jpg") as source:
        photo = np.asarray(source.convert("RGB"))
    image = _samples().sign_on_photo(photo, SIGN, size=56, origin=(60, 60))
    reader = SceneTextReader(threads=1)
    _, load_s = timed(reader.load)
    timings = []
    for _ in range(runs):
        page, elapsed = timed(reader.predict, image)
        timings.append(elapsed * 1000)
    best = min((line.text for line in page.lines), key=lambda text: character_error_rate(SIGN, text), default="")
    return {"load_seconds": round(load_s, 2), "ms_per_photo": describe(timings), "sign_read": best,
            "sign_cer": round(character_error_rate(SIGN, best), 4), "lines": len(page.lines),
            "provenance": reader.provenance()}


def run(count: int, scene_runs: int, out: Path) -> dict[str, Any]:
    """Every measurement, written to `out`."""
    ocr = TesseractOcr()
    ocr.load()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "ocr",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "locard": locard_commit(),
        "machine": {**machine_info(), "load_average": [round(v, 2) for v in os.getloadavg()]},
        "tesseract": ocr.provenance(),
        "pages_per_language": count,
        "read_page": pages(ocr, count),
        "orientation": orientation(ocr, count),
        "second_pass": second_pass(ocr, count),
        "photos": photos(ocr),
        "real_scan": real_scan(ocr),
        "scene_text": scene_text(scene_runs),
    }
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return results


def summary(results: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [f"Tesseract {results['tesseract']['version']}, {results['pages_per_language']} pages per language "
             f"(load average {results['machine']['load_average'][0]}):"]
    for language, row in results["read_page"].items():
        seconds, cer = row["seconds_per_page"], row["cer"]
        lines.append(f"  {language}: {seconds['clean']['median']:.2f} s/page clean, {seconds['rotated']['median']:.2f}"
                     f" s rotated; CER median {cer['clean']['median']:.4f} max {cer['clean']['max']:.4f} clean, "
                     f"max {cer['rotated']['max']:.4f} rotated")
    osd = results["orientation"]
    lines.append(f"  OSD: {osd['seconds']['full_size_s']['median']:.2f} s full size, "
                 f"{osd['seconds']['glyph_scaled_s']['median']:.2f} s glyph-scaled; correct {osd['correct']} "
                 f"of {osd['pages']}")
    for language, row in results["second_pass"].items():
        lines.append(f"  second pass {language}: median CER {row['median_cer']}, single lower on "
                     f"{row['single_lower_cer']}, higher on {row['single_higher_cer']} of {len(row['pages'])}; "
                     f"seconds {row['median_seconds']}")
    lines.append(f"  photos: {results['photos']}")
    lines.append(f"  real scan: CER {results['real_scan']['cer']:.4f} in {results['real_scan']['seconds']:.2f} s")
    scene = results["scene_text"]
    if "ms_per_photo" in scene:
        lines.append(f"  scene text: {scene['ms_per_photo']['p50']} ms per photo, read {scene['sign_read']!r}")
    lines.append(f"  total {results['total_seconds']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=2, help="pages per language (default 2)")
    parser.add_argument("--scene-runs", type=int, default=10, help="timed SceneTextReader runs (default 10)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.pages < 1 or args.scene_runs < 1:
        parser.error("--pages and --scene-runs must be at least 1")
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    print(summary(run(args.pages, args.scene_runs, args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
