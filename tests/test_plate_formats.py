"""National plate formats: valid and invalid readings, OCR repair, EU band codes; readings of any country kept
whole (`read_registration`), country candidates, and phantom readings told from plates."""

from __future__ import annotations

import pytest

from workers.plate_formats import FORMATS, NL_SIDECODES, PlateCandidate, normalise_plate
from workers.plate_registration import (
    UNKNOWN_FORMAT,
    WORLD_FORMATS,
    implausibility,
    is_plausible_plate,
    read_registration,
)


def best(raw: str) -> PlateCandidate:
    candidates = normalise_plate(raw)
    assert candidates, f"no candidate for {raw!r}"
    return candidates[0]


@pytest.mark.parametrize(("raw", "text", "country", "format_prefix"), [
    ("1-ABC-234", "1-ABC-234", "BE", "BE 2010"),
    ("2 XYZ 987", "2-XYZ-987", "BE", "BE 2010"),
    ("ABC-123", "ABC-123", "BE", "BE 1973-2008"),
    ("123-ABC", "123-ABC", "BE", "BE 2008-2010"),
    ("GB-99-99", "GB-99-99", "NL", "NL sidecode 1"),
    ("12-34-HJ", "12-34-HJ", "NL", "NL sidecode 2"),
    ("12-HJ-34", "12-HJ-34", "NL", "NL sidecode 3"),
    ("HJ-12-KL", "HJ-12-KL", "NL", "NL sidecode 4"),
    ("HJ-KL-12", "HJ-KL-12", "NL", "NL sidecode 5"),
    ("12-HJ-KL", "12-HJ-KL", "NL", "NL sidecode 6"),
    ("12-HJK-3", "12-HJK-3", "NL", "NL sidecode 7"),
    ("1-HJK-23", "1-HJK-23", "NL", "NL sidecode 8"),
    ("HJ-123-K", "HJ-123-K", "NL", "NL sidecode 9"),
    ("K-123-BF", "K-123-BF", "NL", "NL sidecode 10"),
    ("GBB-01-B", "GBB-01-B", "NL", "NL sidecode 11"),
    ("G-12-BBH", "G-12-BBH", "NL", "NL sidecode 12"),
    ("1-GB-234", "1-GB-234", "NL", "NL sidecode 13"),
    ("123-GB-4", "123-GB-4", "NL", "NL sidecode 14"),
    ("AB-123-CD", "AB-123-CD", "FR", "FR SIV"),
    ("ab 123 cd", "AB-123-CD", "FR", "FR SIV"),
    ("1234 AB 56", "1234 AB 56", "FR", "FR FNI"),
    ("B-MW 1234", "B-MW 1234", "DE", "DE"),
    ("M AB 123", "M-AB 123", "DE", "DE"),
    ("HH-AB 1234E", "HH-AB 1234E", "DE", "DE"),
    ("AB 1234", "AB 1234", "LU", "LU (AB 1234)"),
    ("12345", "12345", "LU", "LU (12345)"),
])
def test_valid_plates_of_each_country(raw: str, text: str, country: str, format_prefix: str) -> None:
    candidate = best(raw)
    assert (candidate.text_normalised, candidate.country) == (text, country)
    assert candidate.format_name.startswith(format_prefix)
    assert candidate.substitutions == 0
    assert 0.0 < candidate.confidence <= 1.0


@pytest.mark.parametrize("raw", ["", "-- . --", "HELLO", "12", "ABCDEFGHIJKL", "THE QUICK BROWN FOX",
                                 "1234567890123456789", "ÄÖÜ"])
def test_text_that_is_no_plate_gives_nothing(raw: str) -> None:
    assert normalise_plate(raw) == []


@pytest.mark.parametrize(("raw", "country"), [
    ("0-ABC-234", "BE"),  # the Belgian series digit is 1-9
    ("AI-123-CD", "FR"),  # SIV never uses I, O or U
    ("AB-123-OU", "FR"),
    ("B-MW 0123", "DE"),  # German numbers have no leading zero
    ("ABCDEF 12", "DE"),  # at most three district letters and two more
    ("AB 12345", "LU"),
])
def test_invalid_plates_do_not_match_that_format(raw: str, country: str) -> None:
    assert all(not (c.country == country and c.text_normalised.replace(" ", "").replace("-", "")
                    == raw.replace(" ", "").replace("-", "")) for c in normalise_plate(raw))


def test_ocr_confusion_is_repaired_with_lower_confidence() -> None:
    clean, repaired = best("1-ABC-234"), best("1-ABC-Z34")
    assert (repaired.text_normalised, repaired.country) == ("1-ABC-234", "BE")
    assert repaired.substitutions == 1
    assert repaired.confidence < clean.confidence


@pytest.mark.parametrize(("raw", "text", "swaps"), [
    ("1-A8C-234", "1-ABC-234", 1),  # 8 where a letter must be
    ("I-ABC-234", "1-ABC-234", 1),  # I where the series digit must be
    ("AB-I23-CD", "AB-123-CD", 1),
    ("AB-123-C0", "AB-123-CD", 1),  # 0 at a SIV letter: O is not used, D is
    ("GB-99-9G", "GB-99-96", 1),
    ("1-ABC-SZ4", "1-ABC-524", 2),
])
def test_substitutions_follow_letter_and_digit_positions(raw: str, text: str, swaps: int) -> None:
    candidate = best(raw)
    assert (candidate.text_normalised, candidate.substitutions) == (text, swaps)


def test_more_substitutions_cost_more_and_three_are_too_many() -> None:
    one, two = best("1-ABC-Z34"), best("1-ABC-SZ4")
    assert two.confidence < one.confidence
    assert all(c.text_normalised != "1-ABC-234" for c in normalise_plate("I-A8C-Z34"))


@pytest.mark.parametrize(("raw", "text", "country"), [
    ("B 1-ABC-234", "1-ABC-234", "BE"),
    ("B1-ABC-234", "1-ABC-234", "BE"),
    ("NL GB-123-B", "GB-123-B", "NL"),
    ("NLK-123-BF", "K-123-BF", "NL"),
    ("F AB-123-CD", "AB-123-CD", "FR"),
    ("D B-MW 1234", "B-MW 1234", "DE"),
    ("L AB 1234", "AB 1234", "LU"),
])
def test_leading_eu_band_code_is_stripped(raw: str, text: str, country: str) -> None:
    candidate = best(raw)
    assert (candidate.text_normalised, candidate.country) == (text, country)


def test_a_band_letter_that_can_be_part_of_the_plate_is_kept() -> None:
    berlin = best("B-MW 1234")  # Berlin, not a Belgian band
    assert (berlin.text_normalised, berlin.country) == ("B-MW 1234", "DE")


def test_a_stray_end_character_is_dropped_at_a_cost() -> None:
    clean, stray = best("1-ABC-234"), best("1-ABC-234J")
    assert (stray.text_normalised, stray.country) == ("1-ABC-234", "BE")
    assert stray.confidence < clean.confidence


def test_separators_decide_between_formats_with_the_same_characters() -> None:
    assert best("AB 1234").country == "LU"
    assert best("GB-99-99").country == "NL"
    assert best("G-B 9999").country == "DE"


def test_rdw_unused_letters_and_banned_combinations_lower_plausibility() -> None:
    issued = best("GB-123-B")
    with_vowel = next(c for c in normalise_plate("GA-123-B") if c.country == "NL")
    banned = next(c for c in normalise_plate("12-PVV-3") if c.country == "NL")
    assert with_vowel.confidence < issued.confidence
    assert banned.confidence < best("12-PVB-3").confidence


def test_candidates_are_sorted_and_unique() -> None:
    candidates = normalise_plate("BMW 1234E")
    assert [c.confidence for c in candidates] == sorted((c.confidence for c in candidates), reverse=True)
    keys = [(c.text_normalised, c.country, c.format_name) for c in candidates]
    assert len(keys) == len(set(keys))
    assert {c.text_normalised for c in candidates} >= {"B-MW 1234E", "BM-W 1234E"}
    assert candidates[0].as_dict()["country"] == "DE"


def test_french_department_band_read_with_the_plate_is_dropped() -> None:
    with_department = best("AB-123-CD75")
    assert (with_department.text_normalised, with_department.country) == ("AB-123-CD", "FR")
    assert best("AB-123-CD99").confidence < with_department.confidence  # there is no department 99


def test_every_format_is_known() -> None:
    assert {f.country for f in FORMATS} == {"BE", "NL", "FR", "DE", "LU"}
    assert len([f for f in FORMATS if f.country == "NL"]) == len(NL_SIDECODES) == 14


# Readings of plates from outside BE/NL/FR/DE/LU, and what they are.
FOREIGN = [
    ("1AB 2345", "1AB 2345", "CZ"),
    ("5A2 3456", "5A2 3456", "CZ"),  # the Czech third character may be a digit
    ("WA 12345", "WA 12345", "PL"),
    ("KR 1AC23", "KR 1AC23", "PL"),
    ("1234 BCD", "1234 BCD", "ES"),
    ("ZH 123456", "ZH 123456", "CH"),
    ("AB12 CDE", "AB12 CDE", "GB"),
]


def test_normalise_plate_drops_the_leading_digit_of_a_czech_plate() -> None:
    """The failure the issue reports, kept as a record of why `read_registration` exists: fitted to the five
    countries' formats, the Czech 1AB 2345 loses its leading digit."""
    candidates = normalise_plate("1AB 2345")
    assert candidates[0].text_normalised == "AB 2345"
    assert all("".join(ch for ch in c.text_normalised if ch.isalnum()) != "1AB2345" for c in candidates)


@pytest.mark.parametrize(("raw", "text", "country"), FOREIGN)
def test_foreign_plates_keep_every_character_and_name_their_country(raw: str, text: str, country: str) -> None:
    registration = read_registration(raw)
    assert (registration.text_normalised, registration.country) == (text, country)
    assert registration.compact == "".join(ch for ch in raw if ch.isalnum())
    assert registration.format_name.startswith(country)
    assert (registration.candidate_countries, registration.country_source) == ((country,), "single format")


@pytest.mark.parametrize(("raw", "compact"), [
    ("AB 12345", "AB12345"),  # Norway: LU, NL and DE fit only with a character dropped or swapped
    ("A 123 BC 77", "A123BC77"),  # Russia
    ("1-ABC-234J", "1ABC234J"),  # a stray character, or a format not known here: kept, the trimmed one offered
    ("ab.12 cd/34", "AB12CD34"),
])
def test_a_reading_no_format_takes_as_read_is_kept_as_read(raw: str, compact: str) -> None:
    registration = read_registration(raw)
    assert (registration.text_normalised, registration.format_name) == (compact, UNKNOWN_FORMAT)
    assert (registration.country, registration.candidate_countries) == (None, ())
    assert registration.text_read == raw
    assert is_plausible_plate(registration)


def test_repairs_are_offered_as_alternatives_never_reported() -> None:
    swapped = read_registration("1-ABC-Z34")
    assert (swapped.text_normalised, swapped.format_name) == ("1ABCZ34", UNKNOWN_FORMAT)
    assert swapped.alternatives[0].text_normalised == "1-ABC-234"
    assert swapped.alternatives[0].substitutions == 1
    stray = read_registration("1-ABC-234J")
    assert ("1-ABC-234", "BE") in {(c.text_normalised, c.country) for c in stray.alternatives}


@pytest.mark.parametrize(("raw", "countries"), [
    ("AB 123 CD", {"FR", "IT", "AR"}),  # French SIV, Italian, Argentine Mercosur: the same layout
    ("ABC 123", {"BE", "AR", "DE"}),  # Belgian 1973-2008, old Argentine, German
    ("7ABC123", {"BE", "US"}),  # Belgian 2010, Californian
    ("ABC 1234", {"DE", "US"}),
    ("AB 1234", {"LU", "NL", "DE"}),
])
def test_a_layout_shared_by_countries_names_none_and_lists_them(raw: str, countries: set[str]) -> None:
    registration = read_registration(raw)
    assert registration.country is None and registration.country_source is None
    assert set(registration.candidate_countries) == countries
    assert registration.compact == "".join(ch for ch in raw if ch.isalnum())
    assert registration.format_name != UNKNOWN_FORMAT


def test_the_argentine_mercosur_plate_is_argentine_when_its_emblem_or_band_says_so() -> None:
    by_emblem = read_registration("AB 123 CD", emblem_country="ar")
    assert (by_emblem.country, by_emblem.country_source) == ("AR", "emblem")
    assert by_emblem.format_name.startswith("AR Mercosur") and by_emblem.text_normalised == "AB 123 CD"
    old = read_registration("ABC 123", band_code="RA")
    assert (old.country, old.format_name, old.country_source) == ("AR", "AR 1995 (ABC 123)", "band")


@pytest.mark.parametrize(("raw", "band", "text", "country"), [
    ("CZ 1AB 2345", None, "1AB 2345", "CZ"),
    ("F AB-123-CD", None, "AB-123-CD", "FR"),
    ("I AB 123 CD", None, "AB 123 CD", "IT"),
    ("B1-ABC-234", None, "1-ABC-234", "BE"),  # glued, and the whole fits nothing
    ("D B-MW 1234", None, "B-MW 1234", "DE"),  # apart, and the rest is German
    ("CZ1AB2345", "CZ", "1AB 2345", "CZ"),  # the caller read the band: its code is not part of the registration
    ("1AB 2345", "CZ", "1AB 2345", "CZ"),
    ("BA 123 AB", "SK", "BA123AB", "SK"),  # no Slovak format here: kept as read, not rendered as French
])
def test_the_band_names_the_country(raw: str, band: str | None, text: str, country: str) -> None:
    registration = read_registration(raw, band_code=band)
    assert (registration.text_normalised, registration.country, registration.country_source) == (
        text, country, "band")


@pytest.mark.parametrize(("raw", "text"), [
    ("B-MW 1234", "B-MW 1234"),  # Berlin: the rest is no Belgian plate
    ("D-AB 123", "D-AB 123"),  # Duesseldorf: the D is joined by the district's dash, and the whole fits
])
def test_a_band_letter_that_belongs_to_the_registration_is_kept(raw: str, text: str) -> None:
    registration = read_registration(raw)
    assert (registration.text_normalised, registration.country_source) == (text, None)
    assert "DE" in registration.candidate_countries


@pytest.mark.parametrize("raw", ["8", "5", "LAUR", "SEER", "", "HELLO", "1234", "ABCDEFGHIJK12", "THE QUICK FOX"])
def test_phantom_readings_are_not_plausible_plates(raw: str) -> None:
    registration = read_registration(raw)
    assert not is_plausible_plate(registration)
    assert implausibility(registration)
    assert registration.confidence == 0.0 or registration.format_name != UNKNOWN_FORMAT


@pytest.mark.parametrize("raw", ["1-ABC-234", "GB-99-99", "AB-123-CD", "B-MW 1234", "12345", "1AB 2345",
                                 "ZH 123456", "AB12 CDE", "AB 12345", "A123BC77"])
def test_real_plates_are_plausible(raw: str) -> None:
    registration = read_registration(raw)
    assert is_plausible_plate(registration), implausibility(registration)
    assert registration.confidence > 0.0


def test_the_registration_is_json_ready() -> None:
    data = read_registration("1-ABC-Z34").as_dict()
    assert data["format_name"] == UNKNOWN_FORMAT and data["country"] is None
    assert data["alternatives"][0]["text_normalised"] == "1-ABC-234"
    assert isinstance(data["candidate_countries"], list)


def test_world_formats_do_not_change_normalise_plate() -> None:
    assert {f.country for f in WORLD_FORMATS} == {"CZ", "PL", "IT", "ES", "CH", "GB", "AR", "US"}
    assert all(c.country in {"BE", "NL", "FR", "DE", "LU"} for c in normalise_plate("AB 123 CD"))
