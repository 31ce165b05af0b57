"""Benchmark of the fingerprint engine: MINDTCT extraction, Bozorth3 throughput, and 1:N search over 100,000.

    python -m evaluation.bench_fingerprints [--gallery N] [--probes P] [--rerank K] [--ray] [--out PATH]

Data (nothing downloaded; see tests/fingerprint_samples.py): the one real print available (the latent that
`wsq` ships as its test file, 520 x 540) and synthetic SFinGe-style prints (416 x 352 at 500 ppi). The 1:N
gallery is `synthetic_templates(N)`: 200 MINDTCT templates of synthetic fingers (impression 1; their
impression 2 is a probe) and N - 200 field-synthesised minutiae templates (see that function). Search time is
the whole `FingerprintIndex.search`: probe pairs, index votes over N templates, Bozorth3 re-ranking of the
best `--rerank`. `--ray` adds Bozorth3 comparisons per second across Ray actors on this machine.
Results go to `evaluation/results/fingerprints.json` unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from evaluation.common import RESULTS, describe, locard_commit, machine_info
from models.fingerprint_index import DEFAULT_RERANK, FingerprintIndex
from models.fingerprints import FingerprintExtractor, FingerprintImage, decode_fingerprint
from models.minutiae import Bozorth3, load_minutiae, parse_iso_19794_2
from tests import fingerprint_samples as samples

DEFAULT_OUT = RESULTS / "fingerprints.json"
TARGET_SEARCH_SECONDS = 10.0


def _ms(call: Any, runs: int) -> list[float]:
    values = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        values.append((time.perf_counter() - started) * 1000)
    return values


def extraction(runs: int) -> dict[str, Any]:
    """Median ms of MINDTCT + NFIQ 2 (+ checks) on the real latent and on synthetic 500-ppi prints."""
    extractor = FingerprintExtractor()
    extractor.load()
    latent = decode_fingerprint(samples.real_latent_wsq(), declared_ppi=500)
    synthetic = [FingerprintImage(samples.synthetic_impression(f, 1), 500.0, "declared", "synthetic")
                 for f in range(runs)]
    latent_ms = _ms(lambda: extractor.predict(latent), runs)
    synthetic_ms = []
    counts = []
    for image in synthetic:
        started = time.perf_counter()
        counts.append(len(extractor.predict(image).minutiae))
        synthetic_ms.append((time.perf_counter() - started) * 1000)
    return {"real_latent_520x540_ms": describe(latent_ms), "synthetic_416x352_ms": describe(synthetic_ms),
            "synthetic_minutiae_mean": round(statistics.fmean(counts), 1)}


def bozorth_pairs(pairs: int) -> dict[str, Any]:
    """Bozorth3 comparisons per second on one core: probe loaded once, gallery templates loaded per call."""
    isos = [samples.extracted_iso(f, i) for f in range(20) for i in (1, 2)]
    loaded = [load_minutiae(iso) for iso in isos]
    counts = [len(parse_iso_19794_2(iso).minutiae) for iso in isos]
    matcher = Bozorth3(isos[0])
    started = time.perf_counter()
    for k in range(pairs):
        matcher.score(loaded[1 + k % (len(loaded) - 1)])
    preloaded = pairs / (time.perf_counter() - started)
    started = time.perf_counter()
    for k in range(pairs):
        matcher.score(isos[1 + k % (len(isos) - 1)])
    with_loading = pairs / (time.perf_counter() - started)
    latent = Bozorth3(samples.extracted_iso(0, 1))
    latent_iso = decode_fingerprint(samples.real_latent_wsq(), declared_ppi=500)
    extractor = FingerprintExtractor()
    extractor.load()
    latent_template = extractor.predict(latent_iso)
    latent_ms = _ms(lambda: latent.score(latent_template.iso), 20)
    return {"pairs_per_second_preloaded": round(preloaded, 1),
            "pairs_per_second_with_iso_loading": round(with_loading, 1),
            "mean_minutiae": round(statistics.fmean(counts), 1),
            "latent_150_minutiae_vs_synthetic_ms": describe(latent_ms)}


def one_to_n(gallery_size: int, probes: int, rerank: int) -> dict[str, Any]:
    """Build an index of `gallery_size` templates and time searches of probes whose mate is in it."""
    started = time.perf_counter()
    ids, isos = samples.synthetic_templates(gallery_size, seed=0)
    generation = time.perf_counter() - started
    index = FingerprintIndex()
    started = time.perf_counter()
    index.add_many(zip(ids, isos, strict=True))
    memory = index.memory_bytes()  # also compacts: part of the build
    build = time.perf_counter() - started
    seconds, index_seconds, ranks, mate_scores, best_impostor = [], [], [], [], []
    for finger in range(probes):
        probe = samples.extracted_iso(finger, 2)
        started = time.perf_counter()
        index.index_scores(probe)
        index_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        results = index.search(probe, limit=rerank, rerank=rerank)
        seconds.append(time.perf_counter() - started)
        found = [c for c in results if c.template_id == f"f{finger}"]
        ranks.append(found[0].rank if found else None)
        mate_scores.append(found[0].score if found else None)
        best_impostor.append(max((c.score for c in results if c.template_id != f"f{finger}"), default=0))
    rank_one = sum(1 for r in ranks if r == 1)
    return {"gallery": len(index), "template_generation_seconds": round(generation, 1),
            "build_seconds": round(build, 1), "memory_mib": round(memory / 2**20, 1),
            "postings": int(index._owners.size), "rerank": rerank,
            "search_seconds": describe(seconds), "index_stage_seconds": describe(index_seconds),
            "search_seconds_median": round(statistics.median(seconds), 3),
            "mate_ranks": ranks, "rank_one_rate": round(rank_one / probes, 3),
            "mate_bozorth3": mate_scores, "best_impostor_bozorth3": best_impostor,
            "meets_target": statistics.median(seconds) <= TARGET_SEARCH_SECONDS}


def ray_bozorth(actors: int, pairs_per_actor: int) -> dict[str, Any]:
    """Bozorth3 comparisons per second with `actors` Ray actors each comparing its own pairs."""
    import ray

    isos = [samples.extracted_iso(f, i) for f in range(10) for i in (1, 2)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        @ray.remote(num_cpus=1)
        class Matcher:
            def __init__(self, templates: list[bytes]) -> None:
                from models.minutiae import load_minutiae as load

                self.loaded = [load(t) for t in templates]

            def run(self, pairs: int) -> float:
                started = time.perf_counter()
                for k in range(pairs):
                    self.loaded[0].compare(self.loaded[1 + k % (len(self.loaded) - 1)])
                return time.perf_counter() - started

        workers = [Matcher.remote(isos) for _ in range(actors)]  # type: ignore[attr-defined]
        ray.get([w.run.remote(5) for w in workers])
        started = time.perf_counter()
        ray.get([w.run.remote(pairs_per_actor) for w in workers])
        elapsed = time.perf_counter() - started
    finally:
        ray.shutdown()
    return {"actors": actors, "pairs": actors * pairs_per_actor,
            "pairs_per_second": round(actors * pairs_per_actor / elapsed, 1)}


def run(gallery: int, probes: int, rerank: int, with_ray: bool, out: Path) -> dict[str, Any]:
    """All measurements; written to `out`."""
    results: dict[str, Any] = {
        "benchmark": "fingerprints",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "locard": locard_commit(),
        "machine": {**machine_info(), "load_average": [round(v, 2) for v in os.getloadavg()]},
        "model": FingerprintExtractor().provenance(),
        "data": "1 real latent (wsq test file) + synthetic prints and field-synthesised templates "
                "(tests/fingerprint_samples.py); nothing here is case data",
        "extraction": extraction(10),
        "bozorth3_one_core": bozorth_pairs(400),
        "one_to_n": one_to_n(gallery, probes, rerank),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if with_ray:
        results["bozorth3_ray"] = [ray_bozorth(n, 400) for n in (1, 2)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def summary(results: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    ext, bz, search = results["extraction"], results["bozorth3_one_core"], results["one_to_n"]
    lines = [f"extraction: latent {ext['real_latent_520x540_ms']['p50']} ms, synthetic "
             f"{ext['synthetic_416x352_ms']['p50']} ms (median)",
             f"Bozorth3 one core: {bz['pairs_per_second_preloaded']} pairs/s preloaded, "
             f"{bz['pairs_per_second_with_iso_loading']} with ISO loading ({bz['mean_minutiae']} minutiae mean)",
             f"1:N over {search['gallery']:,}: build {search['build_seconds']} s, {search['memory_mib']} MiB, "
             f"search median {search['search_seconds_median']} s (rerank {search['rerank']}), rank-1 "
             f"{search['rank_one_rate']:.0%}, ranks {search['mate_ranks']}"]
    for entry in results.get("bozorth3_ray", []):
        lines.append(f"Ray: {entry['actors']} actor(s) {entry['pairs_per_second']} pairs/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gallery", type=int, default=100_000, help="templates in the 1:N gallery (100,000)")
    parser.add_argument("--probes", type=int, default=10, help="searches, each with a mate in the gallery (10)")
    parser.add_argument("--rerank", type=int, default=DEFAULT_RERANK, help="Bozorth3 re-ranked shortlist")
    parser.add_argument("--ray", action="store_true", help="also measure Bozorth3 across 1 and 2 Ray actors")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.gallery < 250 or args.probes < 1 or args.probes > 200 or args.rerank < 1:
        parser.error("--gallery must be at least 250, --probes 1-200, --rerank at least 1")
    print(summary(run(args.gallery, args.probes, args.rerank, args.ray, args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
