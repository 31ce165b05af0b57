"""Evidence samples for tests: real photos that ship in installed packages, and generated edge cases.

Real photos: ultralytics' `bus.jpg` / `zidane.jpg` and scikit-image's data files (found without importing
ultralytics, which writes a settings file on import). Everything else is generated here: EXIF with GPS,
truncated copies, PDFs, a PNG decompression bomb.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from storage.media import SNIFF_BYTES, sniff_media_type
from workers.analyzers.base import EvidenceFile

EXIF_IFD, GPS_IFD = 0x8769, 0x8825


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {name} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def bus_jpg_path() -> Path:
    """ultralytics' bus.jpg: a real 810x1080 street photo (no EXIF)."""
    return _package_dir("ultralytics") / "assets" / "bus.jpg"


def zidane_jpg_path() -> Path:
    """ultralytics' zidane.jpg: a real 1280x720 photo of two people."""
    return _package_dir("ultralytics") / "assets" / "zidane.jpg"


def skimage_data_path(name: str) -> Path:
    """A file from scikit-image's bundled data directory, e.g. "astronaut.png", "multipage.tif"."""
    return _package_dir("skimage") / "data" / name


def astronaut_jpeg(path: Path, quality: int = 95, scale: float = 1.0) -> Path:
    """scikit-image's astronaut photo (512x512) as a JPEG, optionally resized by `scale`."""
    import skimage.data

    image = Image.fromarray(skimage.data.astronaut())
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.Resampling.LANCZOS)
    image.save(path, "JPEG", quality=quality)
    return path


def jpeg_with_exif(path: Path, *, make: str = "Canon", model: str = "Canon EOS 5D Mark IV",
                   taken: str = "2023:07:14 16:45:09", offset: str = "+02:00", orientation: int = 6,
                   latitude: tuple[float, float, float, str] = (48.0, 51.0, 29.52, "N"),
                   longitude: tuple[float, float, float, str] = (2.0, 17.0, 40.2, "E"),
                   altitude: float = 35.5) -> Path:
    """bus.jpg re-saved with camera, capture time, orientation and a GPS IFD in its EXIF."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131] = make, model, "Firmware Version 1.1.2"
    exif[0x0132], exif[0x0112] = taken, orientation
    exif.get_ifd(EXIF_IFD).update({0x9003: taken, 0x9004: taken, 0x9011: offset, 0x9291: "25",
                                   0xA434: "EF24-105mm f/4L IS USM", 0xA431: "012345678901",
                                   0x927C: bytes(range(256)) * 20})  # a MakerNote-sized blob
    exif.get_ifd(GPS_IFD).update({1: latitude[3], 2: latitude[:3], 3: longitude[3], 4: longitude[:3],
                                  5: b"\x00", 6: altitude, 7: (14.0, 45.0, 9.0), 0x1D: "2023:07:14"})
    with Image.open(bus_jpg_path()) as image:
        image.save(path, "JPEG", quality=92, exif=exif)
    return path


def truncated_copy(src: Path, dst: Path, fraction: float) -> Path:
    """The first `fraction` of `src`'s bytes."""
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * fraction)])
    return dst


def pdf_bytes(pages: int = 1) -> bytes:
    """A valid PDF with `pages` blank pages (written by Pillow)."""
    images = [Image.new("RGB", (200, 100), (255, 255, 255)) for _ in range(pages)]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@functools.cache
def _bomb_bytes(width: int, height: int) -> bytes:
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte 0, then one zero byte per grey pixel
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def bomb_png(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A valid all-black PNG of width x height pixels (~0.9 MB for 900 Mpx); built once per process."""
    path.write_bytes(_bomb_bytes(width, height))
    return path


def grey16_png(path: Path, width: int = 320, height: int = 200) -> Path:
    """A 16-bit greyscale gradient PNG."""
    ramp = np.linspace(0, 65535, width * height, dtype=np.float64).reshape(height, width)
    Image.fromarray(ramp.astype(np.uint16)).save(path, "PNG")
    return path


def animated_gif(path: Path, frames: int = 3, size: tuple[int, int] = (120, 80)) -> Path:
    """An animated GIF whose frames differ."""
    images = [Image.new("RGB", size, ((70 * index) % 256, 255 - (70 * index) % 256, 128))
              for index in range(frames)]
    images[0].save(path, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


def evidence(path: Path, filename: str | None = None) -> EvidenceFile:
    """An EvidenceFile for `path` as production builds it: media type sniffed from content."""
    data = path.read_bytes()
    return EvidenceFile(evidence_id=f"ev-{path.stem}", path=path, sha256=hashlib.sha256(data).hexdigest(),
                        size=len(data), media_type=sniff_media_type(data[:SNIFF_BYTES]),
                        filename=filename if filename is not None else path.name)


def text_layer_pdf(pages: list[list[str]], *, font_size: int = 12) -> bytes:
    """A PDF whose pages carry a real text layer (Helvetica, WinAnsi: accents included), one line per entry.

    Written by hand, object by object, with a correct cross-reference table, as any PDF producer does.
    """

    def literal(text: str) -> bytes:
        raw = text.encode("cp1252")
        return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"

    objects: list[bytes] = []
    page_ids = [4 + 2 * index for index in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = b" ".join(b"%d 0 R" % page_id for page_id in page_ids)
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % len(pages))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for index, lines in enumerate(pages):
        content = b"BT /F1 %d Tf %d TL 72 770 Td " % (font_size, round(font_size * 1.4))
        content += b" ".join(literal(line) + b" Tj T*" for line in lines) + b" ET"
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> "
                       b">> /Contents %d 0 R >>" % (page_ids[index] + 1))
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    return pdf_from_objects(objects)


def pdf_from_objects(objects: list[bytes]) -> bytes:
    """A PDF of numbered objects (the first one the catalog), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
