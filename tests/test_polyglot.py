"""Polyglots: media_probe names both formats and where the second begins; ordinary files are not flagged."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.hostile_runner import evidence_for
from tests.media_samples import bus_jpg_path, skimage_data_path, text_layer_pdf, zidane_jpg_path
from workers.analyzers.base import AnalysisLimits, FindingData
from workers.analyzers.media_probe import MediaProbeAnalyzer


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("hidden/notes.txt", "meeting at the garage, 22 h\n" * 40)
    return buffer.getvalue()


def _gif() -> bytes:
    buffer = io.BytesIO()
    with Image.open(bus_jpg_path()) as image:
        image.convert("P").save(buffer, "GIF")
    return buffer.getvalue()


def _probe(tmp_path: Path, name: str, data: bytes) -> dict[str, FindingData]:
    path = tmp_path / name
    path.write_bytes(data)
    return {f.kind: f for f in MediaProbeAnalyzer().analyze(evidence_for(path), AnalysisLimits())}


PDF = text_layer_pdf([["Proces-verbaal 2026/118"]])


@pytest.mark.parametrize(("name", "container", "extra", "media_type", "where"), [
    ("jpeg-pdf.jpg", bus_jpg_path().read_bytes, PDF, "application/pdf", "after the end"),
    ("jpeg-zip.jpg", bus_jpg_path().read_bytes, _zip(), "application/zip", "end record"),
    ("png-zip.png", skimage_data_path("astronaut.png").read_bytes, _zip(), "application/zip", "end record"),
    ("gif-zip.gif", _gif, _zip(), "application/zip", "end record"),
    ("png-jpeg.png", skimage_data_path("coffee.png").read_bytes, zidane_jpg_path().read_bytes(), "image/jpeg",
     "after the end"),
    ("pdf-zip.pdf", lambda: PDF, _zip(), "application/zip", "end record"),
])
def test_data_after_the_end_is_found(tmp_path: Path, name: str, container: object, extra: bytes, media_type: str,
                                     where: str) -> None:
    head = container()  # type: ignore[operator]
    found = _probe(tmp_path, name, head + extra)
    polyglot = found["media.polyglot"]
    assert polyglot.data["container_end"] == len(head) and polyglot.data["trailing_bytes"] == len(extra)
    [embedded] = polyglot.data["embedded"]
    assert (embedded["media_type"], embedded["offset"], embedded["found"]) == (media_type, len(head), where)
    assert f"at byte {len(head):,}" in (polyglot.label or "") and embedded["format"] in (polyglot.label or "")
    assert polyglot.data["container_format"] in (polyglot.label or "")
    assert found["media.probe"].data["polyglot"] is True
    if head[:2] == b"\xff\xd8" or head[:4] == b"\x89PNG":
        assert found["media.probe"].data["width"] > 0  # still the image it claims to be


def test_a_pdf_behind_leading_bytes_is_found(tmp_path: Path) -> None:
    lead = b"#!/bin/sh\necho this is a script\n" * 3
    found = _probe(tmp_path, "leading.pdf", lead + PDF)
    [embedded] = found["media.polyglot"].data["embedded"]
    assert (embedded["media_type"], embedded["offset"], embedded["found"]) == ("application/pdf", len(lead),
                                                                               "before the header")


@pytest.mark.parametrize("name", ["bus", "zidane", "astronaut", "pdf", "padded", "two-jpegs"])
def test_ordinary_files_are_not_flagged(tmp_path: Path, name: str) -> None:
    bus = bus_jpg_path().read_bytes()
    data = {"bus": bus, "zidane": zidane_jpg_path().read_bytes(), "pdf": PDF,
            "astronaut": skimage_data_path("astronaut.png").read_bytes(),
            "padded": bus + bytes(4096),  # cameras pad with zeros after the end of image
            "two-jpegs": bus + zidane_jpg_path().read_bytes()}[name]  # MPO and motion photos append JPEGs
    found = _probe(tmp_path, f"{name}.bin", data)
    assert "media.polyglot" not in found and found["media.probe"].data["polyglot"] is False
    trailing = found["media.probe"].data["trailing_bytes"]
    assert trailing == {"padded": 4096, "two-jpegs": len(zidane_jpg_path().read_bytes())}.get(name, 0)
