"""Telling a file that cannot be decoded from a fault of the machinery, so that only the latter is retried.

Decoding libraries answer hostile files with their own errors (Pillow: `UnidentifiedImageError`,
`DecompressionBombError`, "image file is truncated", and TypeError or ValueError from a plug-in; pypdfium2:
`PdfiumError`; OpenCV: `cv2.error`). The same file would fail the same way on every retry, so these are the
evidence's problem: a failed run with the reason, never retried. An error counts as bad input when it is a
decoder's own exception type, or one of the ordinary exception types raised from inside a decoder's code.
"""

from __future__ import annotations

import struct
import traceback
from pathlib import Path

from workers.analyzers.base import BadInput

# Packages whose code reads evidence bytes; an error raised inside them is about those bytes.
DECODER_PACKAGES = ("PIL", "pypdfium2", "cv2", "tifffile", "pillow_heif", "imageio", "wsq", "pdqhash")
# What decoders raise on malformed data, when raised from their own code.
DECODER_ERRORS: tuple[type[Exception], ...] = (TypeError, ValueError, OSError, EOFError, SyntaxError, IndexError,
                                               KeyError, ZeroDivisionError, OverflowError, struct.error)


def _typed_decoder_errors() -> tuple[type[BaseException], ...]:
    """The decoders' own exception types, of the decoders installed."""
    found: list[type[BaseException]] = []
    try:
        from PIL import Image, UnidentifiedImageError

        found += [UnidentifiedImageError, Image.DecompressionBombError]
    except ImportError:  # pragma: no cover - Pillow is a dependency
        pass
    try:
        import pypdfium2

        found.append(pypdfium2.PdfiumError)
    except ImportError:  # pragma: no cover - pypdfium2 is a dependency
        pass
    try:
        import cv2

        found.append(cv2.error)
    except ImportError:  # pragma: no cover - OpenCV is a dependency
        pass
    return tuple(found)


def _raised_in_decoder(exc: BaseException) -> str | None:
    """The file and line inside a decoder package where `exc` was raised, if it was raised there."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if not frames:
        return None
    innermost = Path(frames[-1].filename)
    if any(part in DECODER_PACKAGES for part in innermost.parts):
        return f"{innermost.name}:{frames[-1].lineno}"
    return None


def describe(media_type: str) -> str:
    """A media type as an examiner reads it: "a PDF", "a TIFF image"."""
    family, _, subtype = media_type.partition("/")
    subtype = subtype.removeprefix("x-").split("+")[0].upper()
    if media_type == "application/pdf":
        return "a PDF"
    return f"a {subtype} {family}" if family in ("image", "video", "audio") and subtype else f"{media_type}"


def as_bad_input(exc: BaseException, media_type: str) -> BadInput | None:
    """`exc` as a `BadInput` with the reason, when it says the file could not be decoded; else None."""
    if isinstance(exc, BadInput):
        return exc
    typed = isinstance(exc, _typed_decoder_errors())
    where = _raised_in_decoder(exc)
    if not typed and not (isinstance(exc, DECODER_ERRORS) and where):
        return None
    detail = (str(exc).strip().splitlines() or [""])[0][:300]
    name = type(exc).__name__
    if name == "error":  # cv2.error
        name = f"{type(exc).__module__.split('.')[0]}.error"
    origin = name + (f" in {where}" if where else "")
    return BadInput(f"the file could not be read as {describe(media_type)}: {detail} ({origin})")
