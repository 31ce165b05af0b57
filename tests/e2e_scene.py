"""The photos of the cross-matching end-to-end proof, rendered from shipped real images.

* The reference photo: scikit-image's astronaut (Eileen Collins, a real portrait), as a PNG, whole.
* The scene: ultralytics' bus.jpg (a real street photo) with a real-format plate on the front of the bus
  (`tests.plate_samples.plate_on_bus`'s rendering) and the astronaut's head and shoulders, cropped and shrunk
  to another scale than the reference photo, standing in for the man at the left of the bus: the person beside
  the vehicle.
* The near-duplicate: the scene's central 80 %, re-encoded as JPEG at quality 60.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from tests.plate_samples import BUS_FRONT, PlateSample, bus_photo, paste, render

PORTRAIT_CROP = (110, 0, 390, 330)  # the astronaut's head and shoulders in her 512 x 512 portrait
PORTRAIT_SCALE = 0.7  # the scene's capture of her is smaller than the reference photo
PORTRAIT_AT = (110, 330)  # top-left corner in bus.jpg: over the upper body of the man left of the bus


def reference_photo(folder: Path) -> Path:
    """The register's reference photo of the person: the astronaut portrait, whole, as a PNG."""
    path = folder / "reference-astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


def _portrait() -> np.ndarray:
    crop = Image.fromarray(skimage.data.astronaut()).crop(PORTRAIT_CROP)
    size = (round(crop.width * PORTRAIT_SCALE), round(crop.height * PORTRAIT_SCALE))
    return np.asarray(crop.resize(size, Image.Resampling.LANCZOS))


def scene_pixels(sample: PlateSample) -> np.ndarray:
    """bus.jpg with the person pasted beside the bus and `sample`'s plate on its front (slightly blurred whole)."""
    pixels = bus_photo().copy()
    portrait = _portrait()
    x, y = PORTRAIT_AT
    pixels[y:y + portrait.shape[0], x:x + portrait.shape[1]] = portrait
    return paste(pixels, render(sample), BUS_FRONT, blur=1.0)


def scene_photo(sample: PlateSample, folder: Path, name: str = "scene.jpg") -> Path:
    """The scene as a camera's JPEG (quality 92)."""
    path = folder / name
    Image.fromarray(scene_pixels(sample)).save(path, "JPEG", quality=92)
    return path


def near_duplicate(scene: Path, folder: Path, name: str = "near-duplicate.jpg") -> Path:
    """The scene's central 80 %, re-encoded as JPEG at quality 60."""
    path = folder / name
    with Image.open(scene) as image:
        width, height = image.size
        image.convert("RGB").crop((round(width * 0.1), round(height * 0.1), round(width * 0.9),
                                   round(height * 0.9))).save(path, "JPEG", quality=60)
    return path
