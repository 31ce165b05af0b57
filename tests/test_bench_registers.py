"""The register benchmark at 2,000 vehicles on each database: the JSON it writes, recall 1.0, and its queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.bench_plate_lookup import KINDS, like_pattern, make_queries, naive_sample
from evaluation.bench_registers import run
from storage.identifiers import plate_key
from storage.plate_keys import CONFUSIONS
from tests.conftest import POSTGRES_ADMIN_URL
from tests.register_samples import plate

ROWS = 2000
STATS = {"n", "p50", "p95", "max", "mean"}


def test_queries_are_confused_plates_of_the_register() -> None:
    queries = make_queries(ROWS, 30)
    registered = {plate_key(plate(index)) for index in range(ROWS)}
    assert [query.kind for query in queries] == [kind for kind in KINDS for _ in range(30)]
    for query in queries:
        key = plate_key(query.reading)
        if query.kind == "absent":
            assert query.expected_key is None and key not in registered
            continue
        assert query.expected_key in registered
        differences = [(a, b) for a, b in zip(key, query.expected_key, strict=True) if a != b]
        assert len(differences) == {"one_confusion": 1, "two_confusions": 2}.get(query.kind, 0)
        assert all(CONFUSIONS[a] == b for a, b in differences)
        assert (query.reading.count("-") == 1) == (query.kind == "missing_separator")
    assert [query.kind for query in naive_sample(queries, 7)] == [*KINDS, *KINDS[:2]]


def test_like_pattern_wildcards_every_confusable_character() -> None:
    assert like_pattern("1ABC234") == "_A_C_34"


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_benchmark_at_2000_rows(database: str, tmp_path: Path) -> None:
    out = tmp_path / "registers.json"
    run(rows=ROWS, queries_per_kind=20, naive_queries=5, databases=(database,), postgres_url=POSTGRES_ADMIN_URL,
        out=out)
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["rows"] == ROWS and result["csv"]["bytes"] > 0
    imported = result["import"][database]
    assert imported["locard"]["added"] == ROWS and imported["locard"]["rows_per_s"] > 0
    assert imported["reimport"]["unchanged"] == ROWS and imported["reimport"]["added"] == 0
    assert imported["locard"]["peak_rss_mib"] > 0 and imported["floor"]["rows_per_s"] > 0
    assert imported["floor_to_locard"] > 0
    lookup = result["plate_lookup"][database]
    matcher = lookup["matcher"]
    assert set(matcher["ms"]) == STATS and matcher["ms"]["n"] == 20 * len(KINDS)
    assert matcher["ms"]["p50"] <= matcher["ms"]["p95"]
    assert matcher["recall"] == 1.0
    assert set(matcher["kinds"]) == set(KINDS)
    for kind in KINDS[:-1]:
        assert matcher["kinds"][kind]["recall"] == 1.0
    assert matcher["kinds"]["absent"]["queries_with_answers"] == 0
    expected_naive = {"like_scan", "difflib_in_memory"} | ({"levenshtein_scan"} if database == "postgresql" else set())
    assert set(lookup["naive"]) == expected_naive
    for entry in lookup["naive"].values():
        assert entry["ms"]["n"] == 5 and entry["speedup_p50"] is not None
    assert lookup["naive"]["like_scan"]["recall"] == 1.0
    assert result["targets"]["plate_lookup_p95_ms"] == 5.0
    assert result["targets"]["met"] == (matcher["ms"]["p95"] < 5.0)
