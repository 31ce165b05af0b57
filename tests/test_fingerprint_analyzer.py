"""The fingerprints analyzer: routing of declared and undeclared items, resolution, SIVV, and clear failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.minutiae import parse_iso_19794_2
from storage.messages import HeldTemplate
from tests.fingerprint_samples import encode_png, real_latent, real_latent_wsq, reimpress, synthetic_impression
from tests.media_samples import bus_jpg_path
from workers.analyzers.base import AnalysisFailed, AnalysisLimits, EvidenceFile
from workers.analyzers.fingerprints import FingerprintsAnalyzer, looks_like_fingerprint

LIMITS = AnalysisLimits()


@pytest.fixture(scope="module")
def analyzer() -> FingerprintsAnalyzer:
    loaded = FingerprintsAnalyzer()
    loaded.load()
    return loaded


def _item(tmp_path: Path, name: str, data: bytes, media_type: str, kind: str | None = None,
          ppi: float | None = None) -> EvidenceFile:
    path = tmp_path / name
    path.write_bytes(data)
    return EvidenceFile(evidence_id=name, path=path, sha256="", size=len(data), media_type=media_type,
                        filename=name, declared_kind=kind, declared_ppi=ppi)


def test_prints_give_a_template_declared_or_not(analyzer: FingerprintsAnalyzer, tmp_path: Path) -> None:
    undeclared = analyzer.analyze(_item(tmp_path, "a.png", encode_png(synthetic_impression(3, 0)), "image/png"),
                                  LIMITS)
    [finding] = undeclared
    data = finding.data
    assert finding.kind == "fingerprint.template" and data["declared"] is False and data["sivv"] == "passed"
    assert data["minutiae"] == len(data["minutiae_points"]) >= 12 and 0 < data["nfiq2"] <= 100
    assert data["resolution_warning"] and "500 ppi" in data["resolution_warning"]  # the PNG states no resolution
    assert isinstance(finding.held, HeldTemplate) and finding.held.minutiae == data["minutiae"]
    assert finding.held.nfiq2 == data["nfiq2"]
    iso = finding.held.iso
    assert finding.artifacts[0].data == iso and len(parse_iso_19794_2(iso).minutiae) == data["minutiae"]
    [wsq] = analyzer.analyze(_item(tmp_path, "latent.wsq", real_latent_wsq(), "image/x-wsq"), LIMITS)
    assert wsq.data["declared"] is True and wsq.data["source_format"] == "wsq"  # WSQ is a print by definition


def test_a_declared_resolution_is_resampled_to_500_ppi(analyzer: FingerprintsAnalyzer, tmp_path: Path) -> None:
    import cv2

    master = synthetic_impression(6, 0)
    doubled = cv2.resize(master, (master.shape[1] * 2, master.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
    [finding] = analyzer.analyze(_item(tmp_path, "hi.png", encode_png(doubled), "image/png", "fingerprint", 1000.0),
                                 LIMITS)
    assert finding.data["ppi_original"] == 1000.0 and finding.data["ppi_used"] == 500.0
    assert finding.data["resolution_warning"] is None
    assert (finding.data["width"], finding.data["height"]) == (master.shape[1], master.shape[0])
    with pytest.raises(AnalysisFailed, match="ppi"):
        analyzer.analyze(_item(tmp_path, "lo.png", encode_png(master, dpi=150), "image/png", "fingerprint"), LIMITS)


def test_photos_are_skipped_unless_declared_then_they_fail(analyzer: FingerprintsAnalyzer, tmp_path: Path) -> None:
    from skimage import data as samples

    bus = bus_jpg_path().read_bytes()
    assert analyzer.analyze(_item(tmp_path, "bus.jpg", bus, "image/jpeg"), LIMITS) == []
    camera = encode_png(samples.camera())
    assert analyzer.analyze(_item(tmp_path, "camera.png", camera, "image/png"), LIMITS) == []
    with pytest.raises(AnalysisFailed, match="SIVV"):
        analyzer.analyze(_item(tmp_path, "bus2.jpg", bus, "image/jpeg", "fingerprint"), LIMITS)
    with pytest.raises(AnalysisFailed, match="blank"):
        blank = encode_png(np.full((420, 380), 238, np.uint8))
        analyzer.analyze(_item(tmp_path, "blank.png", blank, "image/png", "fingerprint"), LIMITS)
    data = encode_png(synthetic_impression(3, 1))
    with pytest.raises(AnalysisFailed):
        analyzer.analyze(_item(tmp_path, "cut.png", data[: len(data) // 3], "image/png", "fingerprint"), LIMITS)
    with pytest.raises(AnalysisFailed):
        analyzer.analyze(_item(tmp_path, "cut.wsq", real_latent_wsq()[:5000], "image/x-wsq"), LIMITS)


def test_a_declared_latent_that_sivv_refuses_is_kept_with_a_warning(analyzer: FingerprintsAnalyzer,
                                                                    tmp_path: Path) -> None:
    mate = encode_png(reimpress(real_latent(), seed=5, max_rotation=20.0, occlusion=0.0), dpi=500)
    assert analyzer.analyze(_item(tmp_path, "m.png", mate, "image/png"), LIMITS) == []  # undeclared: SIVV decides
    [finding] = analyzer.analyze(_item(tmp_path, "m2.png", mate, "image/png", "fingerprint"), LIMITS)
    assert finding.data["sivv"] == "refused" and "declared a fingerprint" in finding.data["sivv_warning"]
    assert finding.data["minutiae"] >= 12 and finding.data["resolution_warning"] is None


def test_the_screen_tells_prints_from_photos() -> None:
    from skimage import data as samples

    assert looks_like_fingerprint(real_latent())[0] and looks_like_fingerprint(synthetic_impression(2, 0))[0]
    for photo in (samples.camera(), samples.coins(), samples.page()):
        assert not looks_like_fingerprint(photo)[0]
    assert not looks_like_fingerprint(np.zeros((100, 100), np.uint8))[0]  # too small to be a print


def test_wsq_items_are_routed_as_prints_and_probed(tmp_path: Path) -> None:
    from workers.analyzers import registry
    from workers.analyzers.media_probe import MediaProbeAnalyzer

    routed = sorted(name for name, cls in registry.load_all().items() if cls.applies_to("image/x-wsq", None))
    assert routed == ["fingerprints", "hashes", "media_probe"]
    [probe] = MediaProbeAnalyzer().analyze(_item(tmp_path, "l.wsq", real_latent_wsq(), "image/x-wsq"), LIMITS)
    assert (probe.data["format"], probe.data["width"], probe.data["height"]) == ("WSQ", 520, 540)
    assert probe.artifacts[0].content_type == "image/jpeg"
    with pytest.raises(AnalysisFailed):
        MediaProbeAnalyzer().analyze(_item(tmp_path, "c.wsq", real_latent_wsq()[:3000], "image/x-wsq"), LIMITS)
