"""Shared image handling for analyzers: open with a pixel limit, decode, orient, convert, read EXIF.

Evidence images are hostile input. `open_image_limited` reads only the header and refuses an image whose
width x height is over the limit before a single pixel is decoded; `decode` then decodes it and turns
Pillow's many failure modes into `BadInput` (an `AnalysisFailed`) with a reason an examiner can read.
"""

from __future__ import annotations

import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.pillow import pillow_open, register_heif
from workers.analyzers.base import BadInput

ORIENTATION_TAG = 0x0112
TIMES = "\N{MULTIPLICATION SIGN}"  # in dimensions: width TIMES height
# EXIF orientations 5-8 rotate by 90° or 270°, so the upright image has width and height swapped.
SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
# What Pillow raises on broken image data (UnidentifiedImageError is an OSError; a TIFF cut before its size
# tags is a TypeError, "Missing dimensions").
DECODE_ERRORS: tuple[type[Exception], ...] = (OSError, SyntaxError, ValueError, EOFError, IndexError,
                                              struct.error, TypeError)
# What EXIF orientations 2-8 need to be displayed upright (as `ImageOps.exif_transpose` does).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
# Modes that Pillow resizes as they are; others (palette, 1-bit, 16-bit, CMYK) become 8-bit RGB first.
_RESIZABLE_MODES = frozenset({"L", "LA", "RGB", "RGBA"})


def register_heif_opener() -> None:
    """Teach Pillow to read HEIC/HEIF; the opener (`models.pillow.pillow_open`) does it too, once per process."""
    register_heif()


def _over_limit(width: int, height: int, max_pixels: int) -> BadInput:
    return BadInput(f"image is {width}{TIMES}{height} = {width * height:,} pixels, over the limit of "
                          f"{max_pixels:,} pixels; it was not decoded")


def open_image_limited(path: Path, max_pixels: int) -> Image.Image:
    """Open an image lazily (header only) and refuse it, undecoded, when it has more than `max_pixels`.

    Pillow's own decompression-bomb guard is set to the same limit, so that the frames and tiles it checks
    while decoding (GIF frames, TIFF tiles) are held to it too; a worker process applies one limit.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            # Pillow warns between 1x and 2x its limit; the explicit check below decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = pillow_open()(path)
    except Image.DecompressionBombError as exc:  # over 2x the limit: Pillow refuses before we see the size
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise BadInput(f"image is {pixels}, over the limit of {max_pixels:,} pixels; "
                             "it was not decoded") from exc
    except UnidentifiedImageError as exc:
        raise BadInput(f"the image format is not readable: {exc}") from exc
    except DECODE_ERRORS as exc:
        raise BadInput(f"image header is corrupt: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise _over_limit(width, height, max_pixels)
    return image


def decode(image: Image.Image) -> None:
    """Decode the current frame's pixels; broken or truncated data is a `BadInput`."""
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise BadInput(f"a frame of the image is over the pixel limit: {exc}") from exc
    except DECODE_ERRORS as exc:
        raise BadInput(f"image data is truncated or corrupt: {exc}") from exc


def orientation(image: Image.Image) -> int | None:
    """The EXIF orientation tag (1-8), or None when absent or invalid."""
    try:
        value = image.getexif().get(ORIENTATION_TAG)
    except DECODE_ERRORS:
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def upright(image: Image.Image) -> Image.Image:
    """The decoded image with its EXIF orientation applied (`ImageOps.exif_transpose`)."""
    try:
        return ImageOps.exif_transpose(image)
    except DECODE_ERRORS as exc:
        raise BadInput(f"image data is truncated or corrupt: {exc}") from exc


def reduced_rgb(image: Image.Image, max_side: int) -> Image.Image:
    """The current frame decoded, upright, as 8-bit RGB no larger than `max_side` on either side.

    Decoding is at a reduced scale where the format allows it (JPEG's DCT scaling through `draft`), then the
    image is shrunk by an integer factor (`reducing_gap`) before the final resampling, so memory and time are
    those of the decoded file plus a small copy: no full-size RGB, upright or floating-point copy is made.
    """
    turn = _UPRIGHT.get(orientation(image) or 1)
    width, height = image.size
    scale = min(1.0, max_side / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    try:
        if scale < 1.0:
            image.draft(None, (target[0] * 2, target[1] * 2))  # only JPEG reacts: decodes at 1/2, 1/4 or 1/8
    except DECODE_ERRORS as exc:
        raise BadInput(f"image data is truncated or corrupt: {exc}") from exc
    decode(image)
    picture = image if image.mode in _RESIZABLE_MODES else to_rgb(image)
    try:
        if picture.size != target:
            picture = picture.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)
        if turn is not None:
            picture = picture.transpose(turn)
    except DECODE_ERRORS as exc:
        raise BadInput(f"image data is truncated or corrupt: {exc}") from exc
    result = to_rgb(picture)
    return result.copy() if result is image else result  # never the file's own image, which its opener closes


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB for display and hashing: high bit depths are scaled, transparency is flattened on white."""
    if image.mode.startswith("I;16"):
        pixels = np.asarray(image, dtype=np.float32) / 257.0
        return Image.fromarray(pixels.round().astype(np.uint8), "L").convert("RGB")
    if image.mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def bits_per_channel(image: Image.Image, path: Path) -> int | None:
    """Bits per sample as stored, where the format says so; otherwise as Pillow decodes it."""
    declared = image.info.get("bit_depth")  # pillow-heif
    if isinstance(declared, int):
        return declared
    if image.format == "PNG":
        with path.open("rb") as handle:
            header = handle.read(25)
        return header[24] if len(header) == 25 else None  # IHDR bit depth: always at byte 24
    if image.format == "TIFF":
        bits = getattr(image, "tag_v2", {}).get(258)  # BitsPerSample
        if isinstance(bits, tuple) and bits:
            return int(max(bits))
        if isinstance(bits, int):
            return bits
    if image.mode == "1":
        return 1
    if image.mode.startswith("I;16"):
        return 16
    if image.mode in ("I", "F"):
        return 32
    return 8


@dataclass(frozen=True)
class Frame:
    """One decoded frame, upright, as 8-bit RGB pixels, and how it maps back to the evidence image.

    `scale` is (frame width / upright image width); boxes found on `pixels` divide by it to be in the
    upright coordinates of the evidence.
    """

    index: int
    pixels: np.ndarray  # H x W x 3, uint8, RGB
    scale: float
    upright_size: tuple[int, int]  # (width, height) of the whole upright frame before any downscaling


def frame_indices(count: int, max_frames: int) -> list[int]:
    """Which frames of an animation or multi-page file to analyse: all, or `max_frames` spread evenly."""
    if count <= max_frames:
        return list(range(count))
    step = (count - 1) / (max_frames - 1) if max_frames > 1 else 0
    return sorted({round(i * step) for i in range(max_frames)})


def load_frames(path: Path, max_pixels: int, *, max_frames: int = 8, max_side: int | None = None) -> list[Frame]:
    """Decoded, upright RGB frames of an image file (sampled for animations), for vision models.

    Handles every mode Pillow reads (grayscale, CMYK, palette, 16-bit, RGBA, HEIC when registered);
    refuses images over `max_pixels` before decoding; downscales so the longest side is at most `max_side`.
    """
    with open_image_limited(path, max_pixels) as image:
        try:
            count = int(getattr(image, "n_frames", 1))
        except DECODE_ERRORS as exc:
            raise BadInput(f"image data is truncated or corrupt: {exc}") from exc
        frames: list[Frame] = []
        for index in frame_indices(count, max_frames):
            try:
                image.seek(index)
            except DECODE_ERRORS as exc:
                raise BadInput(f"frame {index} cannot be read: {exc}") from exc
            decode(image)
            rgb = to_rgb(upright(image))
            size = rgb.size
            scale = 1.0
            if max_side is not None and max(size) > max_side:
                scale = max_side / max(size)
                rgb = rgb.resize((max(1, round(size[0] * scale)), max(1, round(size[1] * scale))),
                                 Image.Resampling.BILINEAR)
            frames.append(Frame(index, np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)), scale, size))
    return frames


def jpeg_bytes(image: Image.Image | np.ndarray, quality: int = 90) -> bytes:
    """An RGB image (or pixel array) encoded as JPEG, for crops and thumbnails stored as artifacts."""
    import io

    picture = Image.fromarray(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
