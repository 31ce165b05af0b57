"""Polyglots: files valid in one format that carry a second format's data (a PDF or ZIP after a JPEG's end of
image, a ZIP after a PNG's IEND, a PDF behind leading bytes of something else).

The container's own structure is walked to find where its data ends (JPEG markers and entropy-coded scans,
PNG chunks, GIF blocks, a PDF's last ``%%EOF``); what follows is searched for the signatures of other formats.
A ZIP is also found from its end-of-central-directory record, which is how unzip finds it whatever precedes it,
and a PDF from a ``%PDF-`` header within the first 1024 bytes, where PDF readers look for it.
Only foreign formats count: a second JPEG after a JPEG (MPO, motion photos' previews) is the format's own use.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from storage.media import SNIFF_BYTES, sniff_media_type

SEARCH_BYTES = 1 << 20  # how far past the container's end signatures are looked for
PDF_HEADER_WINDOW = 1024  # PDF readers accept a header this far into the file
_ZIP_EOCD = b"PK\x05\x06"
_ZIP_EOCD_SEARCH = 22 + 0xFFFF  # the record (22 bytes) plus the longest comment
# Signatures long enough not to occur by chance in trailing padding; "MZ" is checked further (DOS stub text).
_SIGNATURES = (b"%PDF-", b"PK\x03\x04", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a",
               b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07", b"\x7fELF", b"\x1f\x8b\x08", b"MZ")
_NAMES = {"image/jpeg": "JPEG image", "image/png": "PNG image", "image/gif": "GIF image",
          "application/pdf": "PDF document", "application/zip": "ZIP archive", "application/gzip": "gzip stream",
          "application/x-7z-compressed": "7-Zip archive", "application/x-rar": "RAR archive",
          "application/x-msdownload": "Windows executable", "application/x-elf": "ELF executable"}


@dataclass(frozen=True)
class Embedded:
    """Another format's data found inside a file, at a byte offset."""

    media_type: str
    offset: int
    where: str  # "after the end" of the container, "before the header" (leading data), "end record" (ZIP)


@dataclass(frozen=True)
class PolyglotReport:
    """Where the container's own data ends (None when it was not walked) and what else the file carries."""

    container: str
    container_end: int | None
    trailing_bytes: int | None
    embedded: tuple[Embedded, ...]

    def label(self) -> str:
        first = self.embedded[0]
        text = f"{name(self.container)} that also holds a {name(first.media_type)} at byte {first.offset:,}"
        if self.container_end is not None:
            text += f" (its own data ends at byte {self.container_end:,})"
        more = len(self.embedded) - 1
        return text + (f", and {more} more embedded item{'s' if more > 1 else ''}" if more else "")


def name(media_type: str) -> str:
    """A format in words, for labels."""
    return _NAMES.get(media_type, f"{media_type} file")


def scan(path: Path, media_type: str) -> PolyglotReport:
    """What `path` (sniffed as `media_type`) carries besides its own format; never raises on malformed data."""
    size = path.stat().st_size
    if size == 0:
        return PolyglotReport(media_type, None, None, ())
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        end = _container_end(data, media_type)
        found: dict[str, Embedded] = {}
        if end is not None and end < size:
            for item in _signatures_in(data, end, min(size, end + SEARCH_BYTES)):
                found.setdefault(item.media_type, item)
        if media_type != "application/pdf":
            header = data.find(b"%PDF-", 1, min(size, PDF_HEADER_WINDOW))
            if header > 0 and (end is None or header >= end):
                found.setdefault("application/pdf", Embedded("application/pdf", header, "before the header"))
        if media_type != "application/zip":
            archive = _zip_start(data, size)
            if archive is not None:  # the file ends as a ZIP archive that unzip opens: whatever is in front of it
                found["application/zip"] = Embedded("application/zip", archive, "end record")
    embedded = tuple(sorted((item for kind, item in found.items() if kind != media_type), key=lambda item: item.offset))
    return PolyglotReport(media_type, end, None if end is None else size - end, embedded)


def _container_end(data: mmap.mmap, media_type: str) -> int | None:
    """The offset just after the container's last byte of its own data, or None when it is not walked."""
    try:
        if media_type == "image/jpeg":
            return _jpeg_end(data)
        if media_type == "image/png":
            return _png_end(data)
        if media_type == "image/gif":
            return _gif_end(data)
        if media_type == "application/pdf":
            last = data.rfind(b"%%EOF")
            if last < 0:
                return None
            end = last + 5
            while end < len(data) and data[end:end + 1] in (b"\r", b"\n", b" ", b"\t", b"\x00"):
                end += 1
            return end
    except (IndexError, struct.error, ValueError):
        return None
    return None


def _jpeg_end(data: mmap.mmap) -> int | None:
    """After the EOI marker: segments are skipped by their lengths, scans up to their next marker."""
    pos, size = 2, len(data)
    while pos + 2 <= size:
        if data[pos] != 0xFF:
            return None  # not a marker where one must be: the file is corrupt here
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return pos + 2
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers
            pos += 2
            continue
        if pos + 4 > size:
            return None
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if length < 2:
            return None
        pos += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker that is not RSTn
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= size:
                    return None
                following = data[pos + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    pos += 1 if following == 0xFF else 2
                    continue
                break
    return None


def _png_end(data: mmap.mmap) -> int | None:
    """After the IEND chunk's CRC."""
    pos, size = 8, len(data)
    while pos + 12 <= size:
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        pos += 12 + length
        if kind == b"IEND":
            return pos if pos <= size else None
    return None


def _gif_end(data: mmap.mmap) -> int | None:
    """After the trailer byte (0x3B): blocks are walked by their declared sizes."""
    size = len(data)
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while pos < size:
        block = data[pos]
        if block == 0x3B:
            return pos + 1
        if block == 0x21:  # extension: label, then sub-blocks
            pos += 2
        elif block == 0x2C:  # image descriptor, local colour table, LZW minimum code size, then sub-blocks
            local = data[pos + 9]
            pos += 10 + (3 * 2 ** ((local & 7) + 1) if local & 0x80 else 0) + 1
        else:
            return None
        while pos < size and data[pos] != 0:
            pos += data[pos] + 1
        pos += 1
    return None


def _signatures_in(data: mmap.mmap, start: int, stop: int) -> list[Embedded]:
    """Each foreign format whose signature begins in data[start:stop], at its first offset."""
    found = []
    for magic in _SIGNATURES:
        offset = data.find(magic, start, stop)
        if offset < 0:
            continue
        media_type = sniff_media_type(data[offset:offset + SNIFF_BYTES])
        if magic == b"Rar!\x1a\x07":
            media_type = "application/x-rar"
        if magic == b"MZ" and b"This program" not in data[offset:offset + 256]:
            continue
        if media_type not in ("text/plain", "application/octet-stream"):
            found.append(Embedded(media_type, offset, "after the end"))
    return found


def _zip_start(data: mmap.mmap, size: int) -> int | None:
    """Where a ZIP archive whose end record closes the file begins (what unzip reads), or None."""
    eocd = data.rfind(_ZIP_EOCD, max(0, size - _ZIP_EOCD_SEARCH))
    if eocd < 0 or eocd + 22 > size:
        return None
    entries, directory_size, directory_offset = struct.unpack("<HII", data[eocd + 10:eocd + 20])
    if directory_size > eocd:
        return None
    start = eocd - directory_size - directory_offset  # bytes in front of the archive shift every offset
    if entries == 0 or start < 0 or data[eocd - directory_size:eocd - directory_size + 4] != b"PK\x01\x02":
        return None
    return start
