"""What a plate's own colours say about where it is from: the EU band at its left end, and its background colour.

`plate_origin` measures a detected plate on its frame:

* the plate's background: the rows and columns of light (white) or yellow pixels around the detector box's
  centre. Its colour is recorded; a white plate is neither Dutch nor Luxembourgish (their plates are yellow, front
  and rear), which is the only conclusion drawn from colour (a yellow plate may be British, Dutch, Luxembourgish
  or American; a yellowed photo of a white plate must not rule a country in);
* the EU band: columns of saturated blue immediately left of that background, spanning its rows, BAND_MIN_SHARE
  to BAND_MAX_SHARE of the plate's width, ending on the left (not running on into a blue car body) and not
  going on both above and below the plate (a blue pole or sign behind the plate). It is searched in a margin of
  SEARCH_MARGIN of the box's width left of the box, because the detector's box often stops at the band. A band
  means the plate is European: countries whose plates never carry it (NON_BAND_COUNTRIES) are ruled out;
* the band's country code, read by the plate reader on the band's lower part, upscaled, only when the band is at
  least MIN_BAND_READ_HEIGHT pixels tall (smaller, the letters are a few pixels and readings are guesses), kept
  only when it is one of `BAND_CODES` read with READ_CODE_CONFIDENCE or more.

A blue strip of exactly a band's size glued to the left edge of a plate without one cannot be told from a band
by colour alone; everything else blue around a plate (a bus body, a sign) can.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.plates import PlateReading
from workers.plate_registration import BAND_CODES

# OpenCV HSV (hue 0-180): EU reflex blue (0, 51, 153) is hue 110; camera white balance moves it a little.
BLUE_HUE, BLUE_MIN_SATURATION, BLUE_MIN_VALUE = (98, 130), 110, 45
WHITE_MAX_SATURATION, WHITE_MIN_VALUE = 70, 130
YELLOW_HUE, YELLOW_MIN_SATURATION, YELLOW_MIN_VALUE = (12, 38), 100, 110
SEARCH_MARGIN = 0.4  # of the box's width, left of it: where the band may lie when the box misses it
ROW_BACKGROUND = 0.3  # a row of the plate: this share of it (within the box) is background
COLUMN_BACKGROUND = 0.2  # a column of the plate's background (glyph strokes cover the rest)
BAND_LIGHT = 0.3  # a column this blue is no background column, even with the band's light stars and code
# A column of the band: blue on COLUMN_BLUE of the plate's rows (its stars and code cover the rest), averaged
# over 3 columns (so that the code's strokes do not cut the band in two).
COLUMN_BLUE = 0.45
NEXT_TO_BAND = 0.5  # the plate's area just right of the band: at least this share background
BEYOND_BLUE = 0.5  # blue this share of a strip above and below the plate, in the band's columns: not a band
BAND_MIN_SHARE, BAND_MAX_SHARE = 0.05, 0.16  # the band's width, of the plate's (EU plates: about 0.09)
MIN_PLATE_ROWS = 8
BAND_GAP = 2  # columns of plate border allowed between the band and the background
# Pixels of band height under which its code is not read. Measured on rendered bands (B, NL, D, F, CZ, PL, I, E)
# pasted on bus.jpg: at 26 px no code reads at READ_CODE_CONFIDENCE (best 0.60); from 31 px B, NL, D, F, PL, E
# read right at 0.95-1.00, CZ at 0.53-0.88 ("cz"), I never (a lone narrow letter); no wrong code passed.
MIN_BAND_READ_HEIGHT = 30
READ_CODE_CONFIDENCE = 0.8
BAND_CODE_PART = 0.5  # the code is printed in the lower half of the band, under the ring of stars
BAND_READ_HEIGHT = 96  # the band's code part is scaled to this height before reading
# Plates carrying the EU band: EU members (and, until 2021, GB, whose older plates still carry a "GB" band).
# Of the countries with formats in `workers.plate_registration`, these never carry it:
NON_BAND_COUNTRIES = frozenset({"CH", "AR", "US"})
YELLOW_PLATE_COUNTRIES = frozenset({"NL", "LU"})  # yellow front and rear: a white plate is not theirs

Reader = Callable[[np.ndarray], PlateReading]


@dataclass(frozen=True)
class PlateOrigin:
    """What a plate's colours say: `background` ("white", "yellow" or None when no light background was found)
    and its mean RGB; the band (`band_present`, its width as a share of the plate's, its height in pixels, its
    `band_code` when read confidently, `band_reading` the raw reading); `ruled_out` the countries it excludes,
    each with the reason; `why` how the band decision was reached."""

    background: str | None
    background_rgb: tuple[int, int, int] | None = None
    band_present: bool = False
    band_width_share: float | None = None
    band_height_px: int | None = None
    band_code: str | None = None
    band_reading: tuple[str, float] | None = None
    why: str = ""
    ruled_out: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The finding's `band` and `plate_colours` entries."""
        band = {"present": self.band_present, "code": self.band_code,
                "width_share": self.band_width_share, "height_px": self.band_height_px,
                "code_reading": list(self.band_reading) if self.band_reading else None, "why": self.why}
        return {"band": band, "plate_colours": {"background": self.background,
                                                "background_rgb": list(self.background_rgb or []) or None},
                "ruled_out": dict(self.ruled_out)}


def colour_masks(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks of saturated blue, white and yellow pixels of an RGB image."""
    import cv2

    hsv = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2HSV)
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    blue = ((hue >= BLUE_HUE[0]) & (hue <= BLUE_HUE[1]) & (saturation >= BLUE_MIN_SATURATION)
            & (value >= BLUE_MIN_VALUE))
    white = (saturation <= WHITE_MAX_SATURATION) & (value >= WHITE_MIN_VALUE)
    yellow = ((hue >= YELLOW_HUE[0]) & (hue <= YELLOW_HUE[1]) & (saturation >= YELLOW_MIN_SATURATION)
              & (value >= YELLOW_MIN_VALUE))
    return blue, white, yellow


def _longest_run(flags: np.ndarray, around: int) -> tuple[int, int] | None:
    """The run of True in `flags` through index `around` (or the longest run when `around` is not in one)."""
    if 0 <= around < len(flags) and flags[around]:
        start, end = around, around
        while start > 0 and flags[start - 1]:
            start -= 1
        while end < len(flags) - 1 and flags[end + 1]:
            end += 1
        return start, end
    best: tuple[int, int] | None = None
    opened: int | None = None
    for index, flag in enumerate([*flags.tolist(), False]):
        if flag and opened is None:
            opened = index
        elif not flag and opened is not None:
            if best is None or index - 1 - opened > best[1] - best[0]:
                best = (opened, index - 1)
            opened = None
    return best


def plate_origin(pixels: np.ndarray, box: tuple[float, float, float, float],
                 read: Reader | None = None) -> PlateOrigin:
    """Measure the plate in `box` (x1, y1, x2, y2, pixels of the RGB frame `pixels`); see the module docstring.
    `read` reads the band's code (None: not read)."""
    height, width = pixels.shape[:2]
    x1, y1, x2, y2 = box
    box_w, box_h = x2 - x1, y2 - y1
    left, right = max(0, int(x1 - SEARCH_MARGIN * box_w)), min(width, int(np.ceil(x2 + 0.05 * box_w)))
    top, bottom = max(0, int(y1 - 0.4 * box_h)), min(height, int(np.ceil(y2 + 0.4 * box_h)))
    region = pixels[top:bottom, left:right]
    if region.shape[0] < MIN_PLATE_ROWS or region.shape[1] < 4 * MIN_PLATE_ROWS:
        return PlateOrigin(None, why="plate too small to measure")
    blue, white, yellow = colour_masks(region)
    light = white | yellow
    bx1, bx2 = int(x1) - left, int(np.ceil(x2)) - left
    rows = _longest_run(light[:, bx1:bx2].mean(axis=1) >= ROW_BACKGROUND, int((y1 + y2) / 2) - top)
    if rows is None or rows[1] - rows[0] + 1 < MIN_PLATE_ROWS:
        return PlateOrigin(None, why="no light plate background")
    r1, r2 = rows
    inner = slice(r1 + (r2 - r1) // 10, r2 - (r2 - r1) // 10 + 1)
    background_columns = (light[inner].mean(axis=0) >= COLUMN_BACKGROUND) & (blue[inner].mean(axis=0) < BAND_LIGHT)
    columns = _longest_run(background_columns, int((x1 + x2) / 2) - left)
    if columns is None:
        return PlateOrigin(None, why="no light plate background")
    c1, c2 = columns
    plate_light = light[r1:r2 + 1, c1:c2 + 1]
    white_share, yellow_share = white[r1:r2 + 1, c1:c2 + 1].mean(), yellow[r1:r2 + 1, c1:c2 + 1].mean()
    background = "yellow" if yellow_share > white_share else "white"
    rgb = region[r1:r2 + 1, c1:c2 + 1][plate_light].mean(axis=0)
    colour = (round(float(rgb[0])), round(float(rgb[1])), round(float(rgb[2])))
    ruled_out = {code: f"a {background} plate: {code} plates are yellow"
                 for code in sorted(YELLOW_PLATE_COUNTRIES) if background == "white"}
    band_columns = np.convolve(blue[inner].mean(axis=0), np.ones(3) / 3, mode="same") >= COLUMN_BLUE
    found = _band(band_columns, blue, light[inner], (r1, r2), c1, c2)
    if isinstance(found, str):
        return PlateOrigin(background, colour, why=found, ruled_out=ruled_out)
    band_left, share = found
    band_height = r2 - r1 + 1
    ruled_out |= {code: "an EU band: the plate is European" for code in sorted(NON_BAND_COUNTRIES)}
    code, reading = None, None
    if read is not None and band_height >= MIN_BAND_READ_HEIGHT:
        strip = region[r1 + int(band_height * (1 - BAND_CODE_PART)):r2 + 1, band_left:c1]
        code, reading = read_band_code(strip, read)
    why = f"blue strip {share:.3f} of the plate's width, {band_height} px tall"
    if read is not None and band_height < MIN_BAND_READ_HEIGHT:
        why += f"; its code is not read under {MIN_BAND_READ_HEIGHT} px"
    return PlateOrigin(background, colour, True, round(share, 4), band_height, code, reading, why, ruled_out)


def _band(column_blue: np.ndarray, blue: np.ndarray, light_rows: np.ndarray, rows: tuple[int, int], c1: int,
          c2: int) -> tuple[int, float] | str:
    """The band left of the background (columns c1..c2 over `rows`; `column_blue` the band-like columns): its
    left column and width share, or why there is none."""
    end = c1 - 1
    while end >= 0 and c1 - 1 - end < BAND_GAP and not column_blue[end]:
        end -= 1
    if end < 0 or not column_blue[end]:
        return "no blue strip left of the plate's background"
    start = end
    while start > 0 and column_blue[start - 1]:
        start -= 1
    if start == 0:
        return "the blue left of the plate runs on beyond it (a blue body, not a band)"
    share = (end - start + 1) / (c2 - start + 1)
    if not BAND_MIN_SHARE <= share <= BAND_MAX_SHARE:
        return f"blue strip {share:.3f} of the plate's width, not {BAND_MIN_SHARE}-{BAND_MAX_SHARE}"
    if light_rows[:, c1:c1 + max(1, int(0.1 * (c2 - start)))].mean() < NEXT_TO_BAND:
        return "the plate next to the blue strip is not its background colour"
    r1, r2 = rows
    reach = max(2, (r2 - r1) // 4)
    above = blue[max(0, r1 - reach):r1, start:end + 1]
    below = blue[r2 + 1:r2 + 1 + reach, start:end + 1]
    if above.size and below.size and above.mean() >= BEYOND_BLUE and below.mean() >= BEYOND_BLUE:
        return "the blue strip goes on above and below the plate (not a band)"
    return start, share


def read_band_code(strip: np.ndarray, read: Reader) -> tuple[str | None, tuple[str, float]]:
    """The band code in the lower part of a band `strip` (RGB), when `read` reads one of BAND_CODES with
    READ_CODE_CONFIDENCE or more, and the raw reading."""
    import cv2

    scale = BAND_READ_HEIGHT / strip.shape[0]
    upscaled = cv2.resize(np.ascontiguousarray(strip), (max(1, round(strip.shape[1] * scale)), BAND_READ_HEIGHT),
                          interpolation=cv2.INTER_CUBIC)
    border = BAND_READ_HEIGHT // 4
    padded = cv2.copyMakeBorder(upscaled, 0, 0, border, border, cv2.BORDER_REPLICATE)
    reading = read(padded)
    text = "".join(ch for ch in reading.text.upper() if ch.isalpha())
    confident = text in BAND_CODES and reading.confidence >= READ_CODE_CONFIDENCE
    return (text if confident else None), (reading.text, round(reading.confidence, 4))
