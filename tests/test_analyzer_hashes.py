"""Cryptographic hashes (with the integrity check) and PDQ perceptual hashes of real photos."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from tests.media_samples import (
    astronaut_jpeg,
    bomb_png,
    bus_jpg_path,
    evidence,
    jpeg_with_exif,
    pdf_bytes,
    truncated_copy,
    zidane_jpg_path,
)
from workers.analyzers.base import AnalysisFailed, AnalysisLimits, EvidenceFile, FindingData
from workers.analyzers.hashes import HashesAnalyzer, pack_bits, pdq_distance
from workers.analyzers.registry import select


def _hash(item: EvidenceFile) -> dict[str, FindingData]:
    analyzer = HashesAnalyzer()
    analyzer.load()
    findings = analyzer.analyze(item, AnalysisLimits())
    for finding in findings:
        json.dumps(finding.data, allow_nan=False)
    assert len({finding.kind for finding in findings}) == len(findings)
    return {finding.kind: finding for finding in findings}


def _pdq(path: Path) -> str:
    return str(_hash(evidence(path))["hash.pdq"].data["pdq"])


def test_registered_for_every_media_type() -> None:
    registered = select(["hashes"])["hashes"]
    assert registered is HashesAnalyzer
    assert registered.produces == {"hash.cryptographic", "hash.pdq"}
    assert registered.accepts_media("application/zip")


@pytest.mark.parametrize("content", ["photo", "pdf", "empty"])
def test_cryptographic_hashes_equal_hashlib(tmp_path: Path, content: str) -> None:
    path = tmp_path / "item"
    path.write_bytes({"photo": bus_jpg_path().read_bytes(), "pdf": pdf_bytes(), "empty": b""}[content])
    raw = path.read_bytes()
    found = _hash(evidence(path))
    assert found["hash.cryptographic"].data == {
        "sha256": hashlib.sha256(raw).hexdigest(), "sha1": hashlib.sha1(raw).hexdigest(),
        "md5": hashlib.md5(raw).hexdigest(), "size": len(raw)}
    assert ("hash.pdq" in found) is (content == "photo")


def test_sha256_mismatch_is_an_integrity_failure() -> None:
    item = dataclasses.replace(evidence(bus_jpg_path()), sha256="0" * 64)
    with pytest.raises(AnalysisFailed, match="integrity failure"):
        _hash(item)


def test_pdq_survives_reencoding_and_resizing(tmp_path: Path) -> None:
    original = _pdq(astronaut_jpeg(tmp_path / "a95.jpg", quality=95))
    assert len(original) == 64 and int(original, 16) >= 0
    assert pdq_distance(original, _pdq(astronaut_jpeg(tmp_path / "a30.jpg", quality=30))) < 30
    assert pdq_distance(original, _pdq(astronaut_jpeg(tmp_path / "half.jpg", scale=0.5))) < 30
    assert pdq_distance(original, _pdq(bus_jpg_path())) > 80
    assert pdq_distance(_pdq(bus_jpg_path()), _pdq(zidane_jpg_path())) > 80


def test_pdq_applies_exif_orientation(tmp_path: Path) -> None:
    upright = tmp_path / "upright.png"
    with Image.open(bus_jpg_path()) as bus:
        bus.transpose(Image.Transpose.ROTATE_270).save(upright)  # what orientation 6 displays
    rotated = _pdq(jpeg_with_exif(tmp_path / "oriented.jpg", orientation=6))
    assert pdq_distance(rotated, _pdq(upright)) < 30
    assert pdq_distance(rotated, _pdq(bus_jpg_path())) > 80


def test_pdq_of_an_animation_is_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(skimage.data.astronaut()), Image.fromarray(skimage.data.camera()).convert("RGB")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=200)
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    frames[0].save(first)
    frames[1].save(second)
    assert pdq_distance(_pdq(gif), _pdq(first)) < 30
    assert pdq_distance(_pdq(gif), _pdq(second)) > 80


def test_featureless_image_is_flagged_unreliable(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("RGB", (400, 300), (128, 128, 128)).save(path)
    pdq = _hash(evidence(path))["hash.pdq"]
    assert pdq.data["quality"] < 50
    assert pdq.data["reliable"] is False
    assert "unreliable" in (pdq.label or "")


def test_real_photo_pdq_is_reliable() -> None:
    pdq = _hash(evidence(bus_jpg_path()))["hash.pdq"]
    assert pdq.data["reliable"] is True and 50 <= pdq.data["quality"] <= 100


def test_undecodable_image_keeps_its_cryptographic_hash(tmp_path: Path) -> None:
    found = _hash(evidence(truncated_copy(bus_jpg_path(), tmp_path / "cut.jpg", 0.6)))
    assert set(found) == {"hash.cryptographic"}
    assert "truncated or corrupt" in found["hash.cryptographic"].data["pdq_skipped"]


def test_decompression_bomb_is_hashed_but_not_decoded(tmp_path: Path) -> None:
    found = _hash(evidence(bomb_png(tmp_path / "bomb.png")))
    assert set(found) == {"hash.cryptographic"}
    assert "over the limit" in found["hash.cryptographic"].data["pdq_skipped"]


def test_pack_bits_is_most_significant_bit_first() -> None:
    bits = np.zeros(256, dtype=np.int64)
    bits[[0, 7, 255]] = 1
    assert pack_bits(bits) == "81" + "00" * 30 + "01"


def test_pdq_distance() -> None:
    zeros, ones = "0" * 64, "f" * 64
    assert pdq_distance(zeros, zeros) == 0
    assert pdq_distance(zeros, ones) == 256
    assert pdq_distance("8" + "0" * 63, "1" + "0" * 63) == 2
    with pytest.raises(ValueError, match="64 hex digits"):
        pdq_distance("abc", zeros)
