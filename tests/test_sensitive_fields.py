"""Withheld finding fields: each analyzer declares the biometric fields its findings carry (`sensitive_fields`),
and the case API withholds exactly those from roles without biometric access.

The declarations are checked twice: against the API's own list (`api.deps.BIOMETRIC_KEYS`), and against what the
analyzers really write, by running each declaring analyzer on a shipped sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.deps import BIOMETRIC_KEYS, minimise
from api.principal import Principal
from storage.roles import FORENSIC_EXAMINER, INVESTIGATOR
from tests.fingerprint_samples import encode_png, synthetic_impression
from tests.media_samples import bus_jpg_path, evidence, skimage_data_path
from workers.analyzers import registry
from workers.analyzers.base import AnalysisLimits, EvidenceFile


def _fingerprint(tmp_path: Path) -> EvidenceFile:
    path = tmp_path / "print.png"
    path.write_bytes(encode_png(synthetic_impression(3, 0)))
    return evidence(path)


# A sample on which each declaring analyzer writes every field it declares (a frontal face gets an embedding).
SAMPLES: dict[str, Callable[[Path], EvidenceFile]] = {
    "faces": lambda _: evidence(skimage_data_path("astronaut.png")),
    "similarity": lambda _: evidence(bus_jpg_path()),
    "fingerprints": _fingerprint,
}


def _keys(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) of `value` at any depth: the API withholds a field by its name wherever it lies."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


def test_the_api_withholds_exactly_the_fields_the_analyzers_declare() -> None:
    analyzers = registry.load_all()
    declared = frozenset().union(*(cls.sensitive_fields for cls in analyzers.values()))
    assert declared == BIOMETRIC_KEYS
    # Every declaring analyzer is run below, so a new declaration comes with a sample that shows it.
    assert {name for name, cls in analyzers.items() if cls.sensitive_fields} == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_declared_fields_are_in_the_findings_and_withheld_from_other_roles(name: str, tmp_path: Path) -> None:
    analyzer = registry.select([name])[name]()
    analyzer.load()
    findings = analyzer.analyze(SAMPLES[name](tmp_path), AnalysisLimits())
    declared = type(analyzer).sensitive_fields
    written = {key for finding in findings for key, value in _keys(finding.data) if value is not None}
    assert declared <= written, f"{name} declares {sorted(declared - written)} but did not write them"

    examiner = Principal(name="examiner", roles=frozenset({FORENSIC_EXAMINER}))
    investigator = Principal(name="investigator", roles=frozenset({INVESTIGATOR}))
    for finding in findings:
        assert minimise(examiner, finding.data) == finding.data
        shown = [(key, value) for key, value in _keys(minimise(investigator, finding.data)) if key in declared]
        assert all(value in ("withheld", None) for _, value in shown), (name, shown)
