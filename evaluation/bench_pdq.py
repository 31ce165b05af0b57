"""Benchmark of PDQ near-duplicate lookup: multi-index hashing against a brute-force numpy scan.

    python -m evaluation.bench_pdq [--sizes 10000 100000 1000000] [--probes P] [--out PATH]

Data (generated; see tests/vector_samples.py): uniformly random 256-bit hashes (PDQ hashes of unrelated photos
are close to that: their distances centre on 128) with, for each planted probe, near-duplicates planted at
distances 0, 31 and two in 1-31; plus as many random probes with nothing near. Every lookup asks for all hashes
within 31 bits (Meta's threshold). Recall and precision are against the brute-force answer, which is exact:
the tool a user would otherwise reach for, a numpy scan of every hash (XOR and popcount over 64-bit words).
Both methods run on one core. Memory is what the index holds per hash: the hashes themselves (32 bytes), the
chunk tables (4 bytes per chunk per hash, plus 2^b + 1 offsets per chunk) and the id map apart.
Results go to `evaluation/results/pdq.json` unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.common import RESULTS, describe, locard_commit, machine_info
from storage.pdq_index import PDQ_BYTES, SAME_IMAGE, PdqIndex, hamming
from tests.vector_samples import planted_pdq, random_pdq

DEFAULT_OUT = RESULTS / "pdq.json"
TARGET_P95_MS = 50.0


def brute_force(collection: np.ndarray, ids: list[str], probe: np.ndarray) -> set[tuple[str, int]]:
    distances = hamming(collection, probe)
    return {(ids[row], int(distances[row])) for row in np.flatnonzero(distances <= SAME_IMAGE)}


def one_size(size: int, probes_count: int) -> dict[str, Any]:
    collection, planted = planted_pdq(size, probes=probes_count, per_probe=4, seed=size)
    probes = np.vstack([planted, random_pdq(probes_count, seed=size + 7)])
    ids = [f"finding-{row:08d}" for row in range(size)]
    brute_ms, truth = [], []
    for probe in probes:
        started = time.perf_counter()
        truth.append(brute_force(collection, ids, probe))
        brute_ms.append((time.perf_counter() - started) * 1000)
    relevant = sum(len(answer) for answer in truth)
    result: dict[str, Any] = {"hashes": size, "probes": len(probes), "planted_probes": probes_count,
                              "near_duplicates_in_truth": relevant,
                              "brute_force_ms": describe(brute_ms), "methods": []}
    for chunks in (16, 32):
        index = PdqIndex(chunks=chunks)
        started = time.perf_counter()
        index.add(ids=ids, hashes=collection)
        build = time.perf_counter() - started
        lookup_ms, found, candidates = [], [], []
        for probe in probes:
            started = time.perf_counter()
            hits = index.near(probe)
            lookup_ms.append((time.perf_counter() - started) * 1000)
            found.append({(hit.id, hit.distance) for hit in hits})
            candidates.append(index.candidates_per_query(probe))
        true_positives = sum(len(a & b) for a, b in zip(found, truth, strict=True))
        retrieved = sum(len(answer) for answer in found)
        table_bytes = index._offsets.nbytes + index._members.nbytes
        result["methods"].append({
            "chunks": chunks, "chunk_bits": 256 // chunks, "probe_radius_per_chunk": SAME_IMAGE // chunks,
            "build_seconds": round(build, 2), "lookup_ms": describe(lookup_ms),
            "candidates_per_lookup": describe([float(value) for value in candidates]),
            "recall": round(true_positives / relevant, 6) if relevant else None,
            "precision": round(true_positives / retrieved, 6) if retrieved else None,
            "identical_to_brute_force": found == truth,
            "bytes_per_hash": round(PDQ_BYTES + table_bytes / size, 1),
            "speedup_p95_vs_brute_force": round(describe(brute_ms)["p95"] / max(describe(lookup_ms)["p95"], 0.1),
                                                1),
        })
    return result


def run(sizes: list[int], probes: int, out: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "benchmark": "pdq",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "locard": locard_commit(),
        "machine": {**machine_info(), "load_average": [round(v, 2) for v in os.getloadavg()]},
        "threshold": SAME_IMAGE,
        "data": "uniformly random 256-bit hashes with planted near-duplicates at distances 0-31 "
                "(tests/vector_samples.py); not hashes of real photos",
        "target_p95_ms_at_10e6": TARGET_P95_MS,
        "sizes": [],
    }
    for size in sizes:
        results["sizes"].append(one_size(size, probes))
        print(summary_line(results["sizes"][-1]), flush=True)
        results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def summary_line(entry: dict[str, Any]) -> str:
    methods = "; ".join(f"MIH m={m['chunks']}: p50 {m['lookup_ms']['p50']} p95 {m['lookup_ms']['p95']} ms, "
                        f"{m['candidates_per_lookup']['mean']:.0f} candidates, recall {m['recall']}, "
                        f"exact {m['identical_to_brute_force']}" for m in entry["methods"])
    brute = entry["brute_force_ms"]
    return f"{entry['hashes']:>9,}: brute force p50 {brute['p50']} p95 {brute['p95']} ms; {methods}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="hash counts")
    parser.add_argument("--probes", type=int, default=100, help="planted probes (as many random ones) per size")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if min(args.sizes) < 4 * args.probes or args.probes < 1:
        parser.error("--probes at least 1, and every size at least 4 x --probes (room for the planted hashes)")
    run(sorted(set(args.sizes)), args.probes, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
