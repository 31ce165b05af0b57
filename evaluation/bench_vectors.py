"""Benchmark of the face vector index: 1:N latency on one core, recall@10 of HNSW against exact search, memory.

    python -m evaluation.bench_vectors [--sizes 10000 100000] [--million] [--probes P] [--ef 128 256 512]
                                       [--build-threads T] [--out PATH]

Data (generated, nothing downloaded; see tests/vector_samples.py): dlib-like 128-d face embeddings, people as
points of a cap of the sphere ~0.75 apart with a decaying spectrum, 1-5 photos each perturbed 0.25-0.5 apart,
shaped after real dlib embeddings of the faces in ultralytics' sample photos. Probes are new photos of enrolled
people (80%) and of strangers (20%), which is what a face search receives; recall@10 is the share of the exact
10 nearest (FAISS IndexFlat, brute force) that the HNSW index returns. Queries run one at a time on one core
(`faiss.omp_set_num_threads(1)`); building may use `--build-threads`. Memory per vector is the serialised
FAISS index (what it holds in memory) divided by the vectors; the id map (Python strings) is reported apart.
Results go to `evaluation/results/vectors.json` unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from evaluation.common import RESULTS, describe, locard_commit, machine_info
from storage.vector_faiss import FaissVectorIndex, IndexSettings
from storage.vectors import DLIB_FACE, VectorHit
from tests.vector_samples import face_gallery, face_probes

DEFAULT_OUT = RESULTS / "vectors.json"
TARGET_P95_MS = 20.0
TARGET_RECALL = 0.95
SAME_PERSON = 0.6  # dlib's decision threshold: the neighbours a face search must not miss


def _latencies(index: FaissVectorIndex, probes: np.ndarray, k: int) -> tuple[list[float], list[list[VectorHit]]]:
    values, hits = [], []
    for probe in probes:
        started = time.perf_counter()
        hits.append(index.search(probe, k=k))
        values.append((time.perf_counter() - started) * 1000)
    return values, hits


def _recall(found: list[list[VectorHit]], truth: list[list[VectorHit]], k: int) -> float:
    return round(float(np.mean([len({h.id for h in a} & {h.id for h in b}) / k
                                for a, b in zip(found, truth, strict=True)])), 4)


def _recall_within(found: list[list[VectorHit]], truth: list[list[VectorHit]], threshold: float) -> float | None:
    """Of the exact neighbours nearer than `threshold` (dlib's same-person 0.6), the share the index returned."""
    wanted = [{h.id for h in b if h.distance < threshold} for b in truth]
    total = sum(len(ids) for ids in wanted)
    kept = sum(len(ids & {h.id for h in a}) for a, ids in zip(found, wanted, strict=True))
    return round(kept / total, 4) if total else None


def _faiss_bytes(index: FaissVectorIndex) -> int:
    return int(faiss.serialize_index(index._index).size)


def _id_map_bytes(index: FaissVectorIndex) -> int:
    """The Python id map: the strings, the list of them and the dict from id to position."""
    ids = [item for item in index._ids if item is not None]
    return sum(sys.getsizeof(item) for item in ids) + sys.getsizeof(index._ids) + sys.getsizeof(index._positions)


def one_size(size: int, probes_count: int, k: int, ef_values: list[int], build_threads: int,
             settings: IndexSettings) -> dict[str, Any]:
    gallery = face_gallery(size, seed=size)
    probes = face_probes(gallery, probes_count, seed=size + 1)
    pairs = list(zip(gallery.ids, gallery.vectors, strict=True))
    result: dict[str, Any] = {"vectors": size, "people": int(gallery.identities.max()) + 1, "k": k}

    faiss.omp_set_num_threads(build_threads)
    exact = FaissVectorIndex(DLIB_FACE, settings=dataclasses.replace(settings, exact_up_to=size + 1))
    started = time.perf_counter()
    exact.rebuild(pairs)
    exact_build = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    exact_ms, truth = _latencies(exact, probes, k)
    result["exact"] = {"kind": exact.kind, "build_seconds": round(exact_build, 2), "query_ms": describe(exact_ms),
                       "faiss_bytes_per_vector": round(_faiss_bytes(exact) / size, 1),
                       "id_map_bytes_per_vector": round(_id_map_bytes(exact) / size, 1)}
    del exact

    faiss.omp_set_num_threads(build_threads)
    approximate = FaissVectorIndex(DLIB_FACE, settings=dataclasses.replace(settings, exact_up_to=0))
    started = time.perf_counter()
    approximate.rebuild(pairs)
    hnsw_build = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    runs: list[dict[str, Any]] = []
    for ef in ef_values:
        approximate.settings = dataclasses.replace(settings, ef_search=ef)
        query_ms, found = _latencies(approximate, probes, k)
        runs.append({"ef_search": ef, "query_ms": describe(query_ms), "recall_at_k": _recall(found, truth, k),
                     "recall_below_0_6": _recall_within(found, truth, SAME_PERSON),
                     "top1_agreement": round(float(np.mean([a[0].id == b[0].id for a, b in
                                                            zip(found, truth, strict=True)])), 4)})
    result["hnsw"] = {"kind": approximate.kind, "m": settings.hnsw_m, "ef_construction": settings.ef_construction,
                      "build_seconds": round(hnsw_build, 2), "build_threads": build_threads,
                      "faiss_bytes_per_vector": round(_faiss_bytes(approximate) / size, 1), "by_ef_search": runs}
    for entry in runs:
        entry["meets_targets"] = entry["query_ms"]["p95"] < TARGET_P95_MS and entry["recall_at_k"] >= TARGET_RECALL
    return result


def run(sizes: list[int], probes: int, k: int, ef_values: list[int], build_threads: int, out: Path) -> dict[str, Any]:
    settings = IndexSettings()
    results: dict[str, Any] = {
        "benchmark": "vectors",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "locard": locard_commit(),
        "machine": {**machine_info(), "load_average": [round(v, 2) for v in os.getloadavg()]},
        "faiss": faiss.__version__,
        "space": dataclasses.asdict(DLIB_FACE),
        "settings": dataclasses.asdict(settings),
        "data": "generated dlib-like clustered embeddings (tests/vector_samples.py), shaped after real dlib "
                "embeddings of the faces in ultralytics' zidane.jpg and bus.jpg; not real faces",
        "targets": {"p95_ms_at_10e6": TARGET_P95_MS, "recall_at_10_at_10e6": TARGET_RECALL},
        "sizes": [],
    }
    for size in sizes:
        results["sizes"].append(one_size(size, probes, k, ef_values, build_threads, settings))
        print(summary_line(results["sizes"][-1]), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out.write_text(json.dumps(results, indent=2) + "\n")  # after each size: a long run keeps what it has
    return results


def summary_line(entry: dict[str, Any]) -> str:
    exact, hnsw = entry["exact"], entry["hnsw"]
    runs = ", ".join(f"ef {run['ef_search']}: p50 {run['query_ms']['p50']} p95 {run['query_ms']['p95']} ms "
                     f"recall {run['recall_at_k']} (<0.6: {run['recall_below_0_6']})" for run in hnsw["by_ef_search"])
    return (f"{entry['vectors']:>9,}: exact p50 {exact['query_ms']['p50']} p95 {exact['query_ms']['p95']} ms, "
            f"{exact['faiss_bytes_per_vector']} B/vector; HNSW build {hnsw['build_seconds']} s, "
            f"{hnsw['faiss_bytes_per_vector']} B/vector; {runs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="gallery sizes")
    parser.add_argument("--million", action="store_true", help="also 10^6 vectors (minutes: HNSW build)")
    parser.add_argument("--probes", type=int, default=200, help="face searches per size (200)")
    parser.add_argument("--k", type=int, default=10, help="neighbours per search (10)")
    parser.add_argument("--ef", type=int, nargs="+", default=[128, 256, 512, 1024, 2048],
                        help="HNSW efSearch values")
    parser.add_argument("--build-threads", type=int, default=1, help="FAISS threads while building (1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if min(args.sizes) < 100 or args.probes < 1 or args.k < 1 or min(args.ef) < 1 or args.build_threads < 1:
        parser.error("--sizes at least 100, --probes, --k, --ef and --build-threads at least 1")
    sizes = sorted(set(args.sizes) | ({1_000_000} if args.million else set()))
    run(sizes, args.probes, args.k, sorted(set(args.ef)), args.build_threads, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
