"""National plate formats (BE, NL, FR, DE, LU): valid and invalid readings, OCR repair, EU band codes."""

from __future__ import annotations

import pytest

from workers.plate_formats import FORMATS, NL_SIDECODES, PlateCandidate, normalise_plate


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
