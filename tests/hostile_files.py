"""A hostile-file corpus, generated deterministically (seeded) from real photos, a real print and real PDFs.

`small_corpus()` gives 200+ small files for the test suite: truncated and bit-flipped JPEG, PNG, GIF, TIFF,
WebP, HEIC, BMP, PDF and WSQ at many cut points, mislabelled extensions, empty files, 1x1 and 1xN images,
huge declared dimensions in tiny files, bad PNG CRCs, TIFFs with many pages or bad offsets, PDFs with page
cycles, huge media boxes, broken cross-references, JavaScript and inflation bombs, polyglots, small ZIP bombs,
text that claims to be an image, WSQ garbage and prints declared as such. The large ones are written by the
benchmark (`evaluation.bench_hostile`) with the builders here.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.fingerprint_samples import real_latent_wsq
from tests.media_samples import bus_jpg_path, text_layer_pdf

SEED = 9
CUTS = (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98)
HEADER_CUTS = (16, 100)
FLIPS_PER_FORMAT = 4


@dataclass(frozen=True)
class HostileFile:
    """One generated file: its name (extension possibly lying), bytes, what it tests, and any declared kind."""

    name: str
    data: bytes
    family: str
    declared_kind: str | None = None


# -- real material ------------------------------------------------------------------------------------------
@functools.cache
def real_photo(side: int = 64) -> Image.Image:
    """scikit-image's astronaut (a real photo), `side` pixels square."""
    import skimage.data

    return Image.fromarray(skimage.data.astronaut()).resize((side, side), Image.Resampling.LANCZOS)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    if fmt == "HEIC":
        import pillow_heif

        buffer = io.BytesIO()
        pillow_heif.from_pillow(image.convert("RGB")).save(buffer, quality=70)
        return buffer.getvalue()
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@functools.cache
def base_samples() -> dict[str, bytes]:
    """One small valid file per format, made from real images."""
    photo = real_photo()
    grey = photo.convert("L")
    frames = [photo.rotate(angle).quantize(64) for angle in (0, 90, 180)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    tiff = io.BytesIO()
    photo.save(tiff, "TIFF", save_all=True, append_images=[grey], compression="tiff_deflate")
    return {"jpg": encode(photo, "JPEG", quality=85), "png": encode(photo, "PNG"), "gif": gif.getvalue(),
            "tif": tiff.getvalue(), "webp": encode(photo, "WEBP", quality=80), "heic": encode(photo, "HEIC"),
            "bmp": encode(photo, "BMP"), "pdf": text_layer_pdf([["Proces-verbaal 2026/118, Namur, 3 maart 2023."]]),
            "wsq": real_latent_wsq()}


# -- helpers ------------------------------------------------------------------------------------------------
def png_chunk(kind: bytes, payload: bytes, *, bad_crc: bool = False) -> bytes:
    crc = zlib.crc32(kind + payload) ^ (0xFFFFFFFF if bad_crc else 0)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_bytes(width: int, height: int, idat: bytes, *, mode: int = 0, bad: str = "") -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header, bad_crc=bad == "IHDR")
            + png_chunk(b"IDAT", idat, bad_crc=bad == "IDAT") + png_chunk(b"IEND", b"", bad_crc=bad == "IEND"))


def grey_png_idat(width: int, rows: int) -> bytes:
    """Deflated rows of black 8-bit grey pixels (filter byte 0), as a PNG IDAT payload."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    return b"".join(compressor.compress(row) for _ in range(rows)) + compressor.flush()


def _flip(data: bytes, rng: random.Random, count: int) -> bytes:
    mutable = bytearray(data)
    for _ in range(count):
        index = rng.randrange(min(16, len(data) - 1), len(data))
        mutable[index] ^= 1 << rng.randrange(8)
    return bytes(mutable)


def patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0/SOF2) claiming width x height."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at > 0:
            return data[:at + 5] + struct.pack(">HH", height, width) + data[at + 9:]
    raise ValueError("no SOF marker")


def _tiff(entries: list[tuple[int, int, int, int]], pixels: bytes = b"", *, next_ifd: int = 0) -> bytes:
    """A little-endian TIFF with one IFD of (tag, type, count, value) entries at offset 8, then `pixels`."""
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in sorted(entries):
        ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", next_ifd)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + pixels


def _tiff_grey(width: int, height: int, strip_offset: int | None = None, strip_bytes: int | None = None,
               next_ifd: int = 0) -> bytes:
    """A one-strip 8-bit grey TIFF; over a megapixel only its first 256 bytes of pixels are present."""
    count = width * height if width * height <= 1 << 20 else 256
    pixels = (bytes(range(256)) * (count // 256 + 1))[:count]
    offset = 8 + 2 + 9 * 12 + 4
    return _tiff([(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
                  (273, 4, 1, offset if strip_offset is None else strip_offset), (277, 3, 1, 1),
                  (278, 4, 1, height), (279, 4, 1, len(pixels) if strip_bytes is None else strip_bytes)],
                 pixels, next_ifd=next_ifd)


def pdf_from_objects(objects: list[bytes], *, root: int = 1, xref: str = "good", extra_trailer: bytes = b"") -> bytes:
    """A PDF of numbered objects (1..n) with a cross-reference table that is correct, wrong or missing."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    start = len(out)
    if xref != "missing":
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % (offset * (xref == "good") + 7 * (xref != "good"))
                        for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, root, extra_trailer, start if xref != "missing" else 999999)
    return bytes(out)


def page_objects(pages: int, *, media_box: bytes = b"[0 0 200 100]", content: bytes = b"") -> list[bytes]:
    """Catalog (1), Pages (2), a content stream (3), then `pages` page objects."""
    kids = b" ".join(b"%d 0 R" % (4 + index) for index in range(pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
               b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox " + media_box + b" /Contents 3 0 R >>"] * pages
    return objects


def flate_bomb_pdf(inflated_bytes: int) -> bytes:
    """A one-page PDF whose content stream (spaces, then one text operator) inflates to `inflated_bytes`."""
    compressor = zlib.compressobj(9)
    block = b" " * (1 << 20)
    body = b"".join(compressor.compress(block) for _ in range(inflated_bytes >> 20))
    body += compressor.compress(b"BT /F1 12 Tf 20 50 Td (bomb) Tj ET") + compressor.flush()
    objects = page_objects(1)
    objects[2] = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(body) + body + b"\nendstream"
    return pdf_from_objects(objects)


def _zip(members: dict[str, bytes]) -> bytes:
    """A ZIP archive with a fixed timestamp on every member, so the corpus is the same byte for byte."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            info = zipfile.ZipInfo(member, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


def _exif_app1(entries: list[tuple[int, int, int, int]], *, next_ifd: int = 0, tail: bytes = b"") -> bytes:
    """An EXIF APP1 segment: IFD0 of (tag, type, count, value) entries at offset 8, then `tail`."""
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in entries)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", next_ifd) + tail
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


# -- the small corpus ---------------------------------------------------------------------------------------
def _truncations_and_flips() -> list[HostileFile]:
    files = []
    for extension, data in base_samples().items():
        for cut in CUTS:
            files.append(HostileFile(f"cut{round(cut * 100):02d}.{extension}", data[:max(1, int(len(data) * cut))],
                                     f"truncated-{extension}"))
        for cut in HEADER_CUTS:
            files.append(HostileFile(f"head{cut}.{extension}", data[:cut], f"truncated-{extension}"))
        for index in range(FLIPS_PER_FORMAT):
            rng = random.Random(f"{SEED}:{extension}:{index}")
            files.append(HostileFile(f"flip{index}.{extension}", _flip(data, rng, 1 + index * 3),
                                     f"bitflip-{extension}"))
    return files


def _tiny_images() -> list[HostileFile]:
    one = Image.new("RGB", (1, 1), (200, 30, 30))
    files = [HostileFile(f"one.{ext}", encode(one, fmt), "1x1")
             for ext, fmt in (("jpg", "JPEG"), ("png", "PNG"), ("gif", "GIF"), ("tif", "TIFF"), ("webp", "WEBP"),
                              ("heic", "HEIC"), ("bmp", "BMP"))]
    strip = np.asarray(real_photo(256).convert("L"))[128]
    for name, shape, fmt in (("row.png", (1, 256), "PNG"), ("column.png", (256, 1), "PNG"),
                             ("row.jpg", (1, 256), "JPEG"), ("column.tif", (256, 1), "TIFF"),
                             ("row.gif", (1, 256), "GIF")):
        files.append(HostileFile(name, encode(Image.fromarray(strip.reshape(shape)), fmt), "1xN"))
    return files


def _bombs() -> list[HostileFile]:
    jpeg = base_samples()["jpg"]
    gif_bomb = (b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0) + b"\x2c"
                + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00\x3b")
    bmp_bomb = (b"BM" + struct.pack("<IHHI", 62, 0, 0, 62) + struct.pack("<IiiHHIIiiII", 40, 30000, 30000, 1, 24, 0,
                                                                         0, 2835, 2835, 0, 0) + b"\x00" * 8)
    webp = base_samples()["webp"]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    webp_bomb = b"RIFF" + struct.pack("<I", 4 + len(vp8x) + len(webp) - 12) + b"WEBP" + vp8x + webp[12:]
    return [
        HostileFile("bomb-100k.png", png_bytes(100_000, 100_000, grey_png_idat(100_000, 4)), "bomb"),
        HostileFile("bomb-10k-short.png", png_bytes(10_000, 10_000, grey_png_idat(10_000, 8)), "bomb"),
        HostileFile("bomb.gif", gif_bomb, "bomb"),
        HostileFile("bomb-65k.jpg", patch_jpeg_size(jpeg, 65_000, 65_000), "bomb"),
        HostileFile("bomb-8k.jpg", patch_jpeg_size(jpeg, 8_000, 8_000), "bomb"),
        HostileFile("bomb.tif", _tiff_grey(100_000, 100_000), "bomb"),
        HostileFile("bomb.bmp", bmp_bomb, "bomb"),
        HostileFile("bomb.webp", webp_bomb, "bomb"),
        HostileFile("inflate-bomb.pdf", flate_bomb_pdf(8 << 20), "bomb"),
    ]


def _png_oddities() -> list[HostileFile]:
    idat = zlib.compress(b"".join(b"\x00" + bytes(range(32)) for _ in range(32)))
    ztxt = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (8 << 20), 9))
    text_bomb = png_bytes(32, 32, idat)
    text_bomb = text_bomb[:33] + ztxt + text_bomb[33:]
    many_chunks = png_bytes(32, 32, idat)
    many_chunks = many_chunks[:33] + png_chunk(b"tEXt", b"k\x00v") * 2000 + many_chunks[33:]
    good = png_bytes(32, 32, idat)
    no_idat = good[:33] + png_chunk(b"IEND", b"")
    return [HostileFile(f"badcrc-{chunk.lower()}.png", png_bytes(32, 32, idat, bad=chunk), "png-crc")
            for chunk in ("IHDR", "IDAT", "IEND")] + [
        HostileFile("ztxt-bomb.png", text_bomb, "png-chunks"),
        HostileFile("many-chunks.png", many_chunks, "png-chunks"),
        HostileFile("no-idat.png", no_idat, "png-chunks"),
        HostileFile("bad-depth.png", good[:24] + b"\x07" + good[25:], "png-chunks"),
    ]


def _tiffs() -> list[HostileFile]:
    pages = [Image.new("L", (16, 16), value * 4) for value in range(60)]
    many = io.BytesIO()
    pages[0].save(many, "TIFF", save_all=True, append_images=pages[1:])
    return [
        HostileFile("many-pages.tif", many.getvalue(), "tiff-pages"),
        HostileFile("ifd-beyond-eof.tif", b"II*\x00" + struct.pack("<I", 10_000_000) + bytes(64), "tiff-offsets"),
        HostileFile("ifd-loop.tif", _tiff_grey(16, 16, next_ifd=8), "tiff-offsets"),
        HostileFile("strip-beyond-eof.tif", _tiff_grey(16, 16, strip_offset=10_000_000), "tiff-offsets"),
        HostileFile("strip-huge-count.tif", _tiff_grey(16, 16, strip_bytes=0xFFFFFFF0), "tiff-offsets"),
        HostileFile("zero-entries.tif", b"II*\x00" + struct.pack("<I", 8) + b"\x00\x00" + bytes(4), "tiff-offsets"),
    ]


def _pdfs() -> list[HostileFile]:
    cycle = page_objects(1)
    cycle[1] = b"<< /Type /Pages /Kids [2 0 R 4 0 R] /Count 2 >>"
    deep = page_objects(1)
    deep[2] = b"<< /Length 5 /Nest " + b"[" * 5000 + b"]" * 5000 + b" >>\nstream\nBT ET\nendstream"
    javascript = page_objects(1)
    javascript[0] = b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>"
    javascript.append(b"<< /S /JavaScript /JS (app.alert\\('Locard'\\); this.exportDataObject\\({cName: 'x'}\\);) >>")
    lying_count = page_objects(1)
    lying_count[1] = b"<< /Type /Pages /Kids [4 0 R] /Count 1000000 >>"
    text_pages = [[f"Pagina {number}: proces-verbaal van verhoor."] for number in range(1, 56)]
    return [
        HostileFile("page-cycle.pdf", pdf_from_objects(cycle), "pdf-structure"),
        HostileFile("huge-mediabox.pdf", pdf_from_objects(page_objects(1, media_box=b"[0 0 14400 14400]")),
                    "pdf-mediabox"),
        HostileFile("absurd-mediabox.pdf", pdf_from_objects(page_objects(1, media_box=b"[0 0 1e9 1e9]")),
                    "pdf-mediabox"),
        HostileFile("negative-mediabox.pdf", pdf_from_objects(page_objects(1, media_box=b"[0 0 -200 -100]")),
                    "pdf-mediabox"),
        HostileFile("empty-mediabox.pdf", pdf_from_objects(page_objects(1, media_box=b"[0 0 0 0]")), "pdf-mediabox"),
        HostileFile("broken-xref.pdf", pdf_from_objects(page_objects(2), xref="wrong"), "pdf-xref"),
        HostileFile("no-xref.pdf", pdf_from_objects(page_objects(2), xref="missing"), "pdf-xref"),
        HostileFile("missing-root.pdf", pdf_from_objects(page_objects(1), root=99), "pdf-xref"),
        HostileFile("javascript.pdf", pdf_from_objects(javascript), "pdf-javascript"),
        HostileFile("deep-nesting.pdf", pdf_from_objects(deep), "pdf-structure"),
        HostileFile("lying-count.pdf", pdf_from_objects(lying_count), "pdf-structure"),
        HostileFile("encrypt-garbage.pdf", pdf_from_objects(page_objects(1), extra_trailer=b"/Encrypt << /Filter "
                    b"/Standard /V 9 /R 9 /O (x) /U (y) /P -1 >> "), "pdf-structure"),
        HostileFile("header-only.pdf", b"%PDF-1.7\n", "pdf-structure"),
        HostileFile("55-pages.pdf", text_layer_pdf(text_pages), "pdf-pages"),
    ]


def _polyglots() -> list[HostileFile]:
    photo, samples = bus_jpg_path().read_bytes(), base_samples()
    archive = _zip({"notes.txt": b"Locard polyglot test\n" * 50})
    return [
        HostileFile("jpeg-pdf.jpg", photo + samples["pdf"], "polyglot"),
        HostileFile("jpeg-zip.jpg", photo + archive, "polyglot"),
        HostileFile("png-zip.png", samples["png"] + archive, "polyglot"),
        HostileFile("gif-zip.gif", samples["gif"] + archive, "polyglot"),
        HostileFile("png-jpeg.png", samples["png"] + samples["jpg"], "polyglot"),
        HostileFile("pdf-zip.pdf", samples["pdf"] + archive, "polyglot"),
        HostileFile("leading-garbage.pdf", b"#!/bin/sh\necho not a document\n" * 4 + samples["pdf"], "polyglot"),
    ]


def _archives_and_text() -> list[HostileFile]:
    bomb = _zip({"zeros.bin": bytes(32 << 20)})
    nested = _zip({f"layer{index}.zip": bomb for index in range(4)})
    lying = bytearray(_zip({"a.txt": b"hello"}))
    at = lying.find(b"PK\x01\x02")
    lying[at + 24:at + 28] = struct.pack("<I", 0xFFFFFFFF)  # uncompressed size in the central directory
    return [
        HostileFile("zip-bomb.zip", bomb, "zip-bomb"), HostileFile("nested.zip", nested, "zip-bomb"),
        HostileFile("lying-sizes.zip", bytes(lying), "zip-bomb"),
        HostileFile("text.jpg", b"This is not a photograph.\n" * 20, "not-an-image"),
        HostileFile("page.png", b"<!doctype html><html><script>alert(1)</script></html>\n", "not-an-image"),
        HostileFile("vector.jpg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>\n', "not-an-image"),
        HostileFile("shell.gif", b"GIF89a<?php system($_GET['c']); ?>\n", "not-an-image"),
        HostileFile("data.heic", b'{"claims": "to be a photo"}\n', "not-an-image"),
    ]


def _mislabelled() -> list[HostileFile]:
    samples = base_samples()
    pairs = (("jpg", "pdf"), ("pdf", "jpg"), ("png", "heic"), ("heic", "jpg"), ("wsq", "png"), ("tif", "gif"),
             ("webp", "png"), ("gif", "tif"))
    return [HostileFile(f"{real}-named.{claimed}", samples[real], "mislabelled") for real, claimed in pairs]


def _empty_and_random() -> list[HostileFile]:
    files = [HostileFile(name, b"", "empty") for name in ("empty.jpg", "empty.pdf", "empty.wsq")]
    magics = {"jpg": b"\xff\xd8\xff\xe0", "png": b"\x89PNG\r\n\x1a\n", "gif": b"GIF89a", "tif": b"II*\x00",
              "tiff": b"MM\x00*", "bmp": b"BM", "webp": b"RIFF\x00\x01\x00\x00WEBPVP8 ",
              "heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "pdf": b"%PDF-1.4\n", "zip": b"PK\x03\x04",
              "wsq": b"\xff\xa0\xff\xa8", "jp2": b"\x00\x00\x00\x0cjP  \r\n\x87\n"}
    for extension, magic in magics.items():
        for size in (64, 4096):
            rng = random.Random(f"{SEED}:random:{extension}:{size}")
            files.append(HostileFile(f"random{size}.{extension}", magic + rng.randbytes(size), "random-with-magic"))
    return files


def _exif_and_frames() -> list[HostileFile]:
    jpeg = base_samples()["jpg"]

    def with_exif(app1: bytes) -> bytes:
        return jpeg[:2] + app1 + jpeg[2:]

    # a GPS IFD at 26: latitude reference "N" and a latitude of three rationals with zero denominators (at 56)
    gps = (struct.pack("<H", 2) + struct.pack("<HHI4s", 1, 2, 2, b"N\x00\x00\x00") + struct.pack("<HHII", 2, 5, 3, 56)
           + struct.pack("<I", 0) + struct.pack("<6I", 48, 0, 51, 0, 29, 0))
    frames = [Image.new("P", (4, 4), index % 256) for index in range(300)]
    many = io.BytesIO()
    frames[0].save(many, "GIF", save_all=True, append_images=frames[1:], duration=10)
    cmyk = real_photo().convert("CMYK")
    return [
        HostileFile("exif-huge-count.jpg", with_exif(_exif_app1([(0x010F, 2, 0x7FFFFFFF, 8)])), "exif"),
        HostileFile("exif-ifd-loop.jpg", with_exif(_exif_app1([(0x0112, 3, 1, 6)], next_ifd=8)), "exif"),
        HostileFile("exif-gps-zero.jpg", with_exif(_exif_app1([(0x8825, 4, 1, 26)], tail=gps)), "exif"),
        HostileFile("exif-orientation-9.jpg", with_exif(_exif_app1([(0x0112, 3, 1, 9)])), "exif"),
        HostileFile("300-frames.gif", many.getvalue(), "frames"),
        HostileFile("cmyk.jpg", encode(cmyk, "JPEG"), "modes"),
        HostileFile("grey16.png", encode(Image.fromarray(np.full((32, 32), 40000, np.uint16)), "PNG"), "modes"),
        HostileFile("la.png", encode(real_photo().convert("LA"), "PNG"), "modes"),
    ]


def _prints() -> list[HostileFile]:
    rng = np.random.default_rng(SEED)
    noise = encode(Image.fromarray(rng.integers(0, 255, (300, 300), dtype=np.uint8)), "PNG")
    wsq = base_samples()["wsq"]
    garbage = [HostileFile(f"garbage{index}.wsq", b"\xff\xa0\xff\xa8" + random.Random(f"{SEED}:wsq:{index}")
                           .randbytes(512 * (index + 1)), "wsq-garbage") for index in range(5)]
    header_only = HostileFile("header.wsq", wsq[:64], "wsq-garbage")
    declared = [HostileFile(name, data, "declared-print", "fingerprint") for name, data in (
        ("noise.png", noise), ("blank.png", encode(Image.new("L", (300, 300), 255), "PNG")),
        ("one.png", encode(Image.new("L", (1, 1)), "PNG")), ("photo.jpg", base_samples()["jpg"]),
        ("cut.wsq", wsq[:len(wsq) // 3]), ("photo.heic", base_samples()["heic"]))]
    return [*garbage, header_only, *declared]


GROUPS: tuple[Callable[[], list[HostileFile]], ...] = (
    _truncations_and_flips, _tiny_images, _bombs, _png_oddities, _tiffs, _pdfs, _polyglots, _archives_and_text,
    _mislabelled, _empty_and_random, _exif_and_frames, _prints)


@functools.cache
def small_corpus() -> tuple[HostileFile, ...]:
    """Every small hostile file, in a fixed order with unique names (family/name)."""
    files = tuple(file for group in GROUPS for file in group())
    names = [f"{file.family}/{file.name}" for file in files]
    if len(set(names)) != len(names):
        raise AssertionError("hostile file names must be unique")
    return files


def write(files: tuple[HostileFile, ...] | list[HostileFile], directory: Path) -> list[Path]:
    """The files written under `directory` (one folder per family)."""
    paths = []
    for file in files:
        path = directory / file.family / file.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file.data)
        paths.append(path)
    return paths
