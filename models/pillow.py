"""Pillow's own image opener, for every decoder in Locard (models and workers alike)."""

from __future__ import annotations

import sys
from typing import Any


def pillow_open() -> Any:
    """Pillow's own `Image.open`, even after ultralytics has replaced it.

    Importing ultralytics patches `PIL.Image.open` so that a file Pillow cannot identify makes it import (and
    possibly try to install) the `pi-heif` package; an unreadable evidence file would then fail with a
    ModuleNotFoundError instead of a clear reason. HEIC is read through pillow-heif, registered by Locard.
    """
    from PIL import Image

    opener = Image.open
    if getattr(opener, "__module__", "PIL.Image") != "PIL.Image":
        original = getattr(sys.modules.get(opener.__module__), "_image_open", None)
        if callable(original):
            return original
    return opener
