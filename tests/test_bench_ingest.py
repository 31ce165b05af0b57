"""The ingest benchmark's pure helpers: percentiles, the distinct-evidence generator, the run summaries.

The benchmark itself starts the whole embedded stack; these tests do not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.bench_ingest import (
    analyzer_durations,
    describe,
    make_distinct_images,
    parse_time,
    percentile,
    source_photos,
)


@pytest.mark.parametrize("q", [0, 5, 25, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy_linear(q: float) -> None:
    values = [12.0, 3.5, 7.0, 100.0, 42.0, 8.25, 9.0]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edges() -> None:
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert percentile(iter([3.0, 1.0, 2.0]), 50) == 2.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_describe() -> None:
    stats = describe([10.0, 20.0, 30.0, 40.0])
    assert stats == {"n": 4, "p50": 25.0, "p95": 38.5, "min": 10.0, "max": 40.0, "mean": 25.0}
    assert describe([]) == {"n": 0}


def test_source_photos_ship_with_packages() -> None:
    sources = source_photos()
    names = {path.name for path in sources}
    assert {"bus.jpg", "zidane.jpg"} <= names
    assert len(sources) >= 4
    assert all(path.is_file() for path in sources)


def test_distinct_images_are_distinct_decodable_jpegs(tmp_path: Path) -> None:
    sources = source_photos()
    count = 3 * len(sources) + 2  # several variants of every source
    paths = make_distinct_images(sources, count, tmp_path / "out")
    assert len(paths) == count
    assert all(path.parent == tmp_path / "out" for path in paths)
    digests = {hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}
    assert len(digests) == count
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "JPEG"
            image.load()
            assert min(image.size) > 32
            assert max(image.size) <= 1280


def test_distinct_images_vary_each_source(tmp_path: Path) -> None:
    source = source_photos()[:1]
    paths = make_distinct_images(source, 6, tmp_path)
    sizes = []
    for path in paths:
        with Image.open(path) as image:
            sizes.append(image.size)
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}) == 6
    assert len(set(sizes)) == 6  # each variant crops (and some scale) differently


def test_distinct_images_need_a_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_distinct_images([], 3, tmp_path)


def test_analyzer_durations() -> None:
    statuses = [
        {"runs": [{"analyzer": "hashes", "status": "succeeded", "duration_ms": 10.0},
                  {"analyzer": "media_probe", "status": "succeeded", "duration_ms": 4.0}]},
        {"runs": [{"analyzer": "hashes", "status": "succeeded", "duration_ms": 30.0},
                  {"analyzer": "media_probe", "status": "failed", "duration_ms": 1.0}]},
        {"runs": [{"analyzer": "hashes", "status": "succeeded", "duration_ms": 20.0}]},
    ]
    result = analyzer_durations(statuses)
    assert result["hashes"] == {"runs": 3, "failed": 0, "median_ms": 20.0, "p95_ms": 29.0}
    assert result["media_probe"] == {"runs": 2, "failed": 1, "median_ms": 4.0, "p95_ms": 4.0}


def test_parse_time_treats_naive_as_utc() -> None:
    assert parse_time("2025-01-02T03:04:05") == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert parse_time("2025-01-02T03:04:05Z") == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    aware = parse_time("2025-01-02T05:04:05+02:00")
    assert aware == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
