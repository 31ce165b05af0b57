"""Media probe: what every evidence file is (type from content, size, name/content agreement), image facts,
EXIF (camera, capture time, GPS), PDF page count and a thumbnail.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import PurePath
from typing import Any

import pypdfium2
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from workers import imaging, polyglot
from workers.analyzers.base import (
    EVERY_KIND,
    AnalysisFailed,
    AnalysisLimits,
    Analyzer,
    Artifact,
    EvidenceFile,
    FindingData,
)
from workers.analyzers.registry import register

THUMBNAIL_SIDE = 256
WSQ = "image/x-wsq"
_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image/jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "image/png": (".png",),
    "image/gif": (".gif",),
    # Camera raw formats are TIFF containers.
    "image/tiff": (".tif", ".tiff", ".dng", ".nef", ".cr2", ".arw", ".orf", ".pef", ".rw2", ".srw"),
    "image/bmp": (".bmp", ".dib"),
    "image/x-wsq": (".wsq",),
    "image/jp2": (".jp2", ".j2k", ".j2c", ".jpf", ".jpx", ".jpc"),
    "image/webp": (".webp",),
    "image/heic": (".heic", ".heif", ".hif"),
    "image/avif": (".avif",),
    "video/mp4": (".mp4", ".m4v", ".mov", ".3gp", ".m4a"),
    "application/pdf": (".pdf",),
    "application/zip": (".zip", ".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp", ".jar", ".apk", ".epub",
                        ".kmz", ".ipa"),
    "application/gzip": (".gz", ".tgz"),
    "application/x-7z-compressed": (".7z",),
    "application/x-msdownload": (".exe", ".dll", ".sys", ".scr", ".cpl", ".ocx", ".com"),
    "application/x-elf": (".so", ".elf", ".o", ".bin", ".ko"),
}
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_POINTERS = {_EXIF_IFD, _GPS_IFD, 0xA005}  # offsets to other IFDs, not facts
_IFD0_FACTS = {"make": 0x010F, "model": 0x0110, "software": 0x0131, "datetime": 0x0132}
_EXIF_FACTS = {"lens_make": 0xA433, "lens_model": 0xA434, "body_serial_number": 0xA431,
               "datetime_original": 0x9003, "datetime_digitized": 0x9004, "offset_time": 0x9010,
               "offset_time_original": 0x9011, "offset_time_digitized": 0x9012, "subsec_time": 0x9290,
               "subsec_time_original": 0x9291, "subsec_time_digitized": 0x9292}
_MAX_TEXT, _MAX_ITEMS, _MAX_HEX_BYTES = 256, 64, 64


@register
class MediaProbeAnalyzer(Analyzer):
    """Records what each evidence file is; images get their facts, EXIF and a thumbnail."""

    name = "media_probe"
    version = "1.0.0"
    accepts = frozenset({"*"})
    produces = frozenset({"media.probe", "media.exif", "media.polyglot"})
    runs_on = EVERY_KIND

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        """A "media.probe" finding, plus "media.exif" for images that carry EXIF."""
        if item.size == 0 or item.media_type == "application/x-empty":
            raise AnalysisFailed("the file is empty")
        data: dict[str, Any] = {"media_type": item.media_type, "size": item.size, "filename": item.filename,
                                **_extension_facts(item.filename, item.media_type)}
        findings: list[FindingData] = []
        artifacts: list[Artifact] = []
        if item.media_type == WSQ:
            artifacts.append(_probe_wsq(item, data))
        elif item.media_type.startswith("image/"):
            with imaging.open_image_limited(item.path, limits.max_image_pixels) as image:
                artifacts.append(_probe_image(image, item, data))
                exif = _exif_facts(image)
            if exif is not None:
                findings.append(FindingData("media.exif", exif, label=_exif_label(exif)))
        elif item.media_type == "application/pdf":
            data.update(_pdf_facts(item))
        report = polyglot.scan(item.path, item.media_type)
        data.update({"trailing_bytes": report.trailing_bytes, "polyglot": bool(report.embedded)})
        if report.embedded:
            findings.append(FindingData("media.polyglot", _polyglot_facts(report), label=report.label()))
        findings.insert(0, FindingData("media.probe", data, label=_label(data), artifacts=artifacts))
        return findings


def _extension_facts(filename: str | None, media_type: str) -> dict[str, Any]:
    """Whether the name's extension agrees with the content; None where nothing can be said."""
    extension = PurePath(filename).suffix.lower() if filename else ""
    expected = _EXTENSIONS.get(media_type)
    mismatch = None if not extension or expected is None else extension not in expected
    return {"extension": extension or None, "expected_extensions": list(expected) if expected else None,
            "extension_mismatch": mismatch}


def _probe_wsq(item: EvidenceFile, data: dict[str, Any]) -> Artifact:
    """A WSQ fingerprint (which Pillow cannot read): dimensions and resolution from NBIS' decoder, thumbnail."""
    from models.fingerprints import FingerprintRejected, decode_fingerprint

    try:
        image = decode_fingerprint(item.path.read_bytes())
    except FingerprintRejected as exc:
        raise AnalysisFailed(str(exc)) from exc
    data.update({"format": "WSQ", "mode": "L", "width": image.width, "height": image.height, "orientation": None,
                 "upright_width": image.width, "upright_height": image.height, "frames": 1, "multi_frame": False,
                 "bits_per_channel": 8, "ppi": image.ppi})
    thumbnail = Image.fromarray(image.pixels)
    thumbnail.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return Artifact("thumbnail.jpg", "image/jpeg", imaging.jpeg_bytes(thumbnail.convert("RGB")))


def _probe_image(image: Image.Image, item: EvidenceFile, data: dict[str, Any]) -> Artifact:
    """Fill `data` with the image's facts and return its thumbnail (all of the first frame's data is decoded,
    at a reduced scale where the format allows, so a truncated file is still found out)."""
    try:
        frames = int(getattr(image, "n_frames", 1))
    except imaging.DECODE_ERRORS as exc:
        raise AnalysisFailed(f"image data is truncated or corrupt: {exc}") from exc
    turn = imaging.orientation(image)
    swapped = turn in imaging.SWAPPING_ORIENTATIONS
    data.update({"format": image.format, "mode": image.mode, "width": image.width, "height": image.height,
                 "orientation": turn, "upright_width": image.height if swapped else image.width,
                 "upright_height": image.width if swapped else image.height, "frames": frames,
                 "multi_frame": frames > 1, "bits_per_channel": imaging.bits_per_channel(image, item.path)})
    thumbnail = imaging.reduced_rgb(image, THUMBNAIL_SIDE)
    return Artifact("thumbnail.jpg", "image/jpeg", imaging.jpeg_bytes(thumbnail, 85))


def _polyglot_facts(report: polyglot.PolyglotReport) -> dict[str, Any]:
    """Both formats by name and where each begins: the file opens as either, depending on the program."""
    return {"container": report.container, "container_format": polyglot.name(report.container),
            "container_end": report.container_end, "trailing_bytes": report.trailing_bytes,
            "embedded": [{"media_type": item.media_type, "format": polyglot.name(item.media_type),
                          "offset": item.offset, "found": item.where} for item in report.embedded]}


def _pdf_facts(item: EvidenceFile) -> dict[str, Any]:
    try:
        document = pypdfium2.PdfDocument(item.path)
    except pypdfium2.PdfiumError as exc:
        return {"pages": None, "error": f"the PDF could not be opened: {exc}"}
    try:
        return {"pages": len(document)}
    finally:
        document.close()


def _label(data: dict[str, Any]) -> str:
    if "upright_width" in data:
        text = f"{data['format']} image {data['upright_width']}{imaging.TIMES}{data['upright_height']}"
        text += f", {data['frames']} frames" if data["frames"] > 1 else ""
    elif data["media_type"] == "application/pdf":
        pages = data.get("pages")
        text = f"PDF document, {pages} page{'s' if pages != 1 else ''}" if pages is not None \
            else "PDF document (unreadable)"
    else:
        text = f"{data['media_type']}, {data['size']:,} bytes"
    if data["extension_mismatch"]:
        text += f" (named {data['extension']}, content is {data['media_type']})"
    return text


def _exif_facts(image: Image.Image) -> dict[str, Any] | None:
    """The EXIF facts an examiner looks for, plus every readable tag by name; None without EXIF."""
    try:
        exif = image.getexif()
        sub, gps = exif.get_ifd(_EXIF_IFD), exif.get_ifd(_GPS_IFD)
    except imaging.DECODE_ERRORS:
        return None
    if not exif and not sub and not gps:
        return None
    facts: dict[str, Any] = {key: _text(exif.get(tag)) for key, tag in _IFD0_FACTS.items()}
    facts.update({key: _text(sub.get(tag)) for key, tag in _EXIF_FACTS.items()})
    for moment in ("", "_original", "_digitized"):
        facts[f"datetime{moment}_iso"] = _iso(facts[f"datetime{moment}"], facts[f"offset_time{moment}"],
                                              facts[f"subsec_time{moment}"])
    facts["orientation"] = exif.get(imaging.ORIENTATION_TAG)
    facts["gps"] = _gps_facts(gps) or None
    facts = {key: value for key, value in facts.items() if value not in (None, "")}
    facts["tags"] = {"ifd0": _named(exif, ExifTags.TAGS), "exif": _named(sub, ExifTags.TAGS),
                     "gps": _named(gps, ExifTags.GPSTAGS)}
    return facts


def _exif_label(facts: dict[str, Any]) -> str:
    camera = " ".join(str(facts[key]) for key in ("make", "model") if key in facts) or "unknown camera"
    parts = [camera]
    taken = facts.get("datetime_original_iso") or facts.get("datetime_iso")
    if taken:
        parts.append(f"taken {taken}")
    gps = facts.get("gps") or {}
    if "latitude" in gps:
        parts.append(f"GPS {gps['latitude']:.6f}, {gps['longitude']:.6f}")
    return ", ".join(parts)


def _text(value: Any) -> str | None:
    """An EXIF ASCII value as clean text."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    return value.replace("\x00", "").strip()[:_MAX_TEXT].encode("utf-8", "replace").decode("utf-8")


def _iso(value: str | None, offset: str | None, subsec: str | None) -> str | None:
    """EXIF "YYYY:MM:DD HH:MM:SS" with its sub-seconds and UTC offset as ISO 8601; None if invalid."""
    if not value:
        return None
    try:
        text = datetime.strptime(value, "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        try:  # some writers (Photoshop) store ISO 8601, offset included, against the standard
            return datetime.fromisoformat(value).isoformat() if len(value) >= 19 else None
        except ValueError:
            return None
    if subsec and subsec.isdigit():
        text += f".{subsec}"
    if offset and re.fullmatch(r"[+-]\d\d:\d\d", offset):
        text += offset
    return text


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def _degrees(value: Any, ref: Any, negative: str) -> float | None:
    """Degrees/minutes/seconds and a hemisphere reference as signed decimal degrees."""
    parts = [_number(part) for part in value] if isinstance(value, tuple) else [_number(value)]
    hemisphere = _text(ref)
    if not parts or any(part is None for part in parts) or not hemisphere:
        return None
    numbers = [part for part in parts if part is not None]
    degrees = sum(number / 60**index for index, number in enumerate(numbers[:3]))
    return round(-degrees if hemisphere.upper().startswith(negative) else degrees, 7)


def _gps_facts(gps: dict[int, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    latitude, longitude = _degrees(gps.get(2), gps.get(1), "S"), _degrees(gps.get(4), gps.get(3), "W")
    if latitude is not None and longitude is not None and abs(latitude) <= 90 and abs(longitude) <= 180:
        facts.update(latitude=latitude, longitude=longitude)
    altitude = _number(gps.get(6))
    if altitude is not None:
        below_sea_level = gps.get(5) in (1, b"\x01")
        facts["altitude_m"] = -altitude if below_sea_level else altitude
    clock = gps.get(7)
    if isinstance(clock, tuple) and len(clock) == 3 and None not in (parts := [_number(p) for p in clock]):
        hours, minutes, seconds = (part or 0.0 for part in parts)
        facts["timestamp"] = f"{int(hours):02d}:{int(minutes):02d}:{seconds:02.0f}" if seconds.is_integer() \
            else f"{int(hours):02d}:{int(minutes):02d}:{seconds:06.3f}"
    datestamp = _text(gps.get(0x1D))
    if datestamp:
        facts["datestamp"] = datestamp
        if "timestamp" in facts and re.fullmatch(r"\d{4}:\d\d:\d\d", datestamp):
            facts["datetime_utc"] = f"{datestamp.replace(':', '-')}T{facts['timestamp']}Z"
    return facts


def _named(ifd: Any, names: dict[int, str]) -> dict[str, Any]:
    """Every tag of one IFD by name, JSON-safe and size-capped; pointers to other IFDs are left out."""
    return {names.get(tag, f"0x{tag:04X}"): _json_safe(value) for tag, value in ifd.items()
            if tag not in _POINTERS and not isinstance(value, dict)}


def _json_safe(value: Any) -> Any:
    """A tag value as JSON: rationals as floats, long byte blobs (MakerNote) summarised, lengths capped."""
    if isinstance(value, IFDRational | float):
        return _number(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bytes):
        text = value.rstrip(b"\x00")
        if text and text.isascii() and text.decode().isprintable():  # e.g. ExifVersion b"0232"
            return _text(text)
        return value.hex() if len(value) <= _MAX_HEX_BYTES else f"<{len(value):,} bytes, not decoded>"
    if isinstance(value, tuple | list):
        return [_json_safe(item) for item in value[:_MAX_ITEMS]]
    return _text(str(value))
