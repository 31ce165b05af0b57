"""The one image opener for every decoder in Locard (models and workers alike): Pillow, with HEIC/HEIF."""

from __future__ import annotations

import sys
import threading
from typing import Any

_HEIF_LOCK = threading.Lock()
_heif_registered = False


def register_heif() -> None:
    """Teach Pillow to read HEIC/HEIF (pillow-heif); done once per process, safe to call again."""
    global _heif_registered
    with _HEIF_LOCK:
        if not _heif_registered:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _heif_registered = True


def pillow_open() -> Any:
    """Pillow's own `Image.open`, with HEIC/HEIF registered, even after ultralytics has replaced it.

    Importing ultralytics patches `PIL.Image.open` so that a file Pillow cannot identify makes it import (and
    possibly try to install) the `pi-heif` package; an unreadable evidence file would then fail with a
    ModuleNotFoundError instead of a clear reason. HEIC is read through pillow-heif, registered here, so that
    every path that decodes an image (OCR, the fingerprint screen, hashes, vision) reads the same formats.
    """
    from PIL import Image

    register_heif()
    opener = Image.open
    if getattr(opener, "__module__", "PIL.Image") != "PIL.Image":
        original = getattr(sys.modules.get(opener.__module__), "_image_open", None)
        if callable(original):
            return original
    return opener
