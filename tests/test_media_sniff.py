"""Media type comes from content, never from a name."""

from __future__ import annotations

import pytest

from storage.media import sniff_media_type
from tests.media_samples import bus_jpg_path, pdf_bytes, skimage_data_path


@pytest.mark.parametrize(("head", "expected"), [
    (b"", "application/x-empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00", "image/heic"),
    (b"\xff\xa0\xff\xa8\x00", "image/x-wsq"),
    (b"hello, world\n", "text/plain"),
    (b"\x00\x01\x02\x03\xfe", "application/octet-stream"),
])
def test_sniff_signatures(head: bytes, expected: str) -> None:
    assert sniff_media_type(head) == expected


def test_sniff_real_files() -> None:
    assert sniff_media_type(bus_jpg_path().read_bytes()[:64]) == "image/jpeg"
    assert sniff_media_type(skimage_data_path("multipage.tif").read_bytes()[:64]) == "image/tiff"
    assert sniff_media_type(pdf_bytes()[:64]) == "application/pdf"  # whatever it is named
