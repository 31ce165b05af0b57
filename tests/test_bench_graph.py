"""The graph benchmark on a small world: it runs, writes its JSON, and the graph's bounded queries answer what the
naive walk over every match finds (the limit never reached)."""

from __future__ import annotations

import json
from pathlib import Path

from evaluation import bench_graph


def test_the_graph_benchmark_runs_and_agrees_with_the_naive_walk(tmp_path: Path) -> None:
    out = tmp_path / "graph.json"
    result = bench_graph.run(hub_edges=60, background=90, queries=3, naive_queries=1, databases=("sqlite",),
                             out=out)
    assert json.loads(out.read_text(encoding="utf-8"))["benchmark"] == "graph"
    measured = result["databases"]["sqlite"]["queries"]
    assert set(measured) == {f"{root}_depth{depth}" for root in ("vehicle", "plate", "item") for depth in (1, 2)}
    for name, entry in measured.items():
        assert entry["locard"]["ms"]["n"] == 3 and entry["locard"]["ms"]["p95"] > 0, name
        assert entry["unbounded"]["nodes"] == entry["naive_python"]["nodes"], name
        assert entry["unbounded"]["edges"] == entry["naive_python"]["edges"], name
    assert measured["vehicle_depth1"]["unbounded"]["nodes"] == 2  # the vehicle and the plate read 60 times
    assert measured["plate_depth1"]["unbounded"]["nodes"] == 62  # with the vehicle and the 60 items
    assert result["databases"]["sqlite"]["rows"]["matches"] == 60 + 90 + 60 + 30
