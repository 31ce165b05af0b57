"""A large scene with small vehicles, made (never downloaded) from real photos that ship in installed packages.

`car_park_scene` pastes real vehicle crops onto a real ground texture, about 1,600 x 1,000 px, seen from above,
and returns the image with its labels (box and class of every vehicle pasted): the kind of image on which a
detector that shrinks everything to 640 px misses small vehicles, and sliced inference should not.

The packages hold no top-down photo of a car: the vehicles are the best real crops they have, seen from the side
(the rear half of the bus in ultralytics' `bus.jpg`, clear of the people in front of it, and scikit-image's
stereo motorcycle), scaled to car-park size and mirrored; the ground is scikit-image's `gravel` texture (a real
photo taken from above), with painted bay lines drawn on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.media_samples import bus_jpg_path

SCENE_SIZE = (1600, 1000)  # width, height
# Crops of real photos (x1, y1, x2, y2 in the source's pixels) and the COCO class of what they show.
BUS_REAR = (380, 230, 805, 735)  # bus.jpg: the bus from behind the men to its rear wheel
MOTORCYCLE = (90, 120, 710, 500)  # skimage stereo_motorcycle left image
# Where each vehicle goes: top-left corner, length of its longest side, mirrored.
PLACEMENTS = (("bus", (180, 160), 110, False), ("bus", (620, 420), 100, True), ("motorcycle", (1050, 200), 90, False),
              ("bus", (1300, 700), 120, True), ("motorcycle", (350, 740), 95, True))


@dataclass(frozen=True)
class Label:
    """A labelled object: COCO class and box (x1, y1, x2, y2) in scene pixels."""

    label: str
    box: tuple[float, float, float, float]


def _sources() -> dict[str, np.ndarray]:
    from PIL import Image
    from skimage import data

    with Image.open(bus_jpg_path()) as image:
        bus = np.asarray(image.convert("RGB"))
    motorcycle = data.stereo_motorcycle()[0]
    x1, y1, x2, y2 = BUS_REAR
    mx1, my1, mx2, my2 = MOTORCYCLE
    return {"bus": bus[y1:y2, x1:x2], "motorcycle": motorcycle[my1:my2, mx1:mx2]}


def _ground(width: int, height: int) -> np.ndarray:
    """scikit-image's gravel photo, tiled to the scene (mirrored at the seams), tinted grey-brown, with bay lines."""
    from skimage import data

    gravel = data.gravel().astype(np.float32)
    mirrored = np.block([[gravel, gravel[:, ::-1]], [gravel[::-1, :], gravel[::-1, ::-1]]])
    reps = (-(-height // mirrored.shape[0]), -(-width // mirrored.shape[1]))
    tiled = np.tile(mirrored, reps)[:height, :width]
    ground = np.stack([tiled * 0.55 + 40, tiled * 0.52 + 38, tiled * 0.48 + 35], axis=-1)
    for x in range(60, width, 220):  # bay lines, 4 px wide
        ground[:, x:x + 4] = (225, 225, 215)
    return np.clip(ground, 0, 255).astype(np.uint8)


def car_park_scene() -> tuple[np.ndarray, list[Label]]:
    """The scene (H x W x 3 RGB uint8) and its labels, one per vehicle pasted."""
    from PIL import Image

    width, height = SCENE_SIZE
    scene = _ground(width, height)
    sources = _sources()
    labels = []
    for label, (x, y), side, mirrored in PLACEMENTS:
        crop = sources[label]
        scale = side / max(crop.shape[:2])
        size = (round(crop.shape[1] * scale), round(crop.shape[0] * scale))
        pasted = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))
        if mirrored:
            pasted = pasted[:, ::-1]
        scene[y:y + size[1], x:x + size[0]] = pasted
        labels.append(Label(label, (float(x), float(y), float(x + size[0]), float(y + size[1]))))
    return scene, labels
