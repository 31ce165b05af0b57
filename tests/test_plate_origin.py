"""What a plate's colours say (`workers.plate_origin`), on plates rendered onto ultralytics' bus.jpg: an EU band
is found where there is one and nowhere else (not in the blue bus body, not in a blue object beside a plate), the
background colour rules out only what it must, and a band code is kept only when read confidently."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.plates import PlateReading
from tests.plate_samples import (
    BUS_FRONT,
    CLOSE_UP,
    CLOSE_UP_SAMPLES,
    SAMPLES,
    PlateSample,
    blue_beside,
    bus_photo,
    paste,
    quad_box,
    render,
)
from workers.plate_origin import MIN_BAND_READ_HEIGHT, NON_BAND_COUNTRIES, plate_origin
from workers.plate_registration import read_registration

BY_NAME = {sample.name: sample for sample in SAMPLES + CLOSE_UP_SAMPLES}


def _photo(sample: PlateSample, quad: list[tuple[float, float]]) -> np.ndarray:
    return paste(bus_photo(), render(sample), quad, blur=1.0)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.band is None and s.name != "AR 1995"], ids=str)
@pytest.mark.parametrize("quad", [BUS_FRONT, CLOSE_UP], ids=["photo size", "close-up"])
def test_no_band_on_plates_without_one(sample: PlateSample, quad: list[tuple[float, float]]) -> None:
    """On the front of the blue bus (150 px) and on its side (360 px): the bus body is no band."""
    origin = plate_origin(_photo(sample, quad), quad_box(quad))
    assert origin.band_present is False, origin.why
    assert not set(origin.ruled_out) & NON_BAND_COUNTRIES
    assert origin.background == ("yellow" if sample.background != (255, 255, 255) else "white")


@pytest.mark.parametrize("name", ["BE band", "NL band", *[s.name for s in CLOSE_UP_SAMPLES]])
def test_a_band_is_found_on_close_up_plates(name: str) -> None:
    origin = plate_origin(_photo(BY_NAME[name], CLOSE_UP), quad_box(CLOSE_UP))
    assert origin.band_present, origin.why
    assert origin.band_width_share is not None and 0.07 <= origin.band_width_share <= 0.11
    assert set(origin.ruled_out) >= NON_BAND_COUNTRIES
    assert origin.band_code is None  # no reader given: present, code unread


def test_a_band_is_found_at_photo_size_when_the_plate_border_separates_it() -> None:
    """At 150 px on the bus front the Belgian plate's red border parts its band from the blue bus: found. The
    Dutch plate's black border, blurred, does not: its band merges with the bus body and is not claimed."""
    assert plate_origin(_photo(BY_NAME["BE band"], BUS_FRONT), quad_box(BUS_FRONT)).band_present
    dutch = plate_origin(_photo(BY_NAME["NL band"], BUS_FRONT), quad_box(BUS_FRONT))
    assert (dutch.band_present, dutch.background) == (False, "yellow")


@pytest.mark.parametrize(("width", "height"), [(0.3, 1.0), (0.09, 1.8), (0.6, 2.5)])
def test_a_blue_object_beside_a_plate_is_no_band(width: float, height: float) -> None:
    """A blue panel wider than a band, a band-wide pole going on above and below the plate, a large blue sign:
    each touches the left edge of an Italian plate without band."""
    photo = blue_beside(_photo(BY_NAME["IT"], CLOSE_UP), CLOSE_UP, width=width, height=height)
    origin = plate_origin(photo, quad_box(CLOSE_UP))
    assert origin.band_present is False, origin.why


def test_the_detector_box_may_miss_the_band() -> None:
    """Detector boxes often start right of the band: the band is searched left of the box."""
    x1, y1, x2, y2 = quad_box(CLOSE_UP)
    origin = plate_origin(_photo(BY_NAME["NL band"], CLOSE_UP), (x1 + 0.25 * (x2 - x1), y1, x2, y2))
    assert origin.band_present, origin.why


def test_background_colour_rules_out_only_yellow_plate_countries() -> None:
    white = plate_origin(_photo(BY_NAME["CZ"], CLOSE_UP), quad_box(CLOSE_UP))
    yellow = plate_origin(_photo(BY_NAME["GB"], CLOSE_UP), quad_box(CLOSE_UP))
    assert (white.background, sorted(white.ruled_out)) == ("white", ["LU", "NL"])
    assert (yellow.background, yellow.ruled_out) == ("yellow", {})
    assert yellow.background_rgb is not None and yellow.background_rgb[2] < 80 < yellow.background_rgb[0]


@pytest.mark.parametrize(("text", "confidence", "code"), [("NL", 0.99, "NL"), ("nl", 0.95, "NL"), ("NL", 0.5, None),
                                                          ("XQ", 0.99, None), ("", 0.0, None)])
def test_a_band_code_is_kept_only_when_read_confidently(text: str, confidence: float, code: str | None) -> None:
    seen: list[np.ndarray] = []

    def reader(image: np.ndarray) -> PlateReading:
        seen.append(image)
        return PlateReading(text, confidence)

    origin = plate_origin(_photo(BY_NAME["NL band"], CLOSE_UP), quad_box(CLOSE_UP), reader)
    assert origin.band_code == code and origin.band_reading == (text, confidence)
    assert origin.band_height_px is not None and origin.band_height_px >= MIN_BAND_READ_HEIGHT
    assert len(seen) == 1 and seen[0].shape[0] > origin.band_height_px  # the strip was upscaled


def test_a_band_too_small_to_read_is_not_read() -> None:
    """A 120 px plate: its band (about 26 px tall) is found but its code is not read."""
    quad = [(x * 1.0, y * 1.0) for x, y in [(150, 600), (270, 604), (268, 629), (152, 626)]]
    sample = dataclasses.replace(BY_NAME["BE band"])
    origin = plate_origin(_photo(sample, quad), quad_box(quad), lambda image: PlateReading("B", 0.99))
    assert origin.band_present and origin.band_height_px is not None
    assert origin.band_height_px < MIN_BAND_READ_HEIGHT and origin.band_code is None and origin.band_reading is None


def test_ruled_out_countries_are_no_candidates() -> None:
    """An EU band rules out the Californian reading of 1-ABC-234 (so one format is left: Belgium's) and the
    Argentine one of AB-123-CD (France and Italy are left); a white plate is not Dutch."""
    belgian = read_registration("1-ABC-234", ruled_out=NON_BAND_COUNTRIES)
    assert (belgian.country, belgian.candidate_countries) == ("BE", ("BE",))
    assert read_registration("1-ABC-234").candidate_countries == ("BE", "US")
    assert set(read_registration("AB-123-CD", ruled_out=NON_BAND_COUNTRIES).candidate_countries) == {"FR", "IT"}
    assert "NL" not in read_registration("AB-12-34", ruled_out={"NL", "LU"}).candidate_countries
    assert read_registration("ZH 123456", ruled_out=NON_BAND_COUNTRIES).format_name == "unknown"
