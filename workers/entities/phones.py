"""Telephone numbers, found by libphonenumber's matcher at its VALID leniency.

Rules:

* a number must be valid for its region (length and prefix as the numbering plan allows), written
  internationally (+32 ..., 0032 ...) or nationally for `default_region` (0470 12 34 56 for BE); with no
  default region only international forms are found;
* the matcher itself skips what reads as a date or a time, and numbers glued to letters or other digits;
  national register numbers, IBANs and dates that still read as phone numbers are dropped by
  `extract_entities`, which gives those families precedence over phone numbers.

value: E.164 (+32470123456); details: region, number type, international and national formats.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import Leniency, PhoneNumberFormat, PhoneNumberMatcher, PhoneNumberType

from workers.entities.model import Entity

CONFIDENCE_INTERNATIONAL, CONFIDENCE_NATIONAL = 0.9, 0.85
NUMBER_TYPES = {value: name.lower() for name, value in vars(PhoneNumberType).items()
                if name.isupper() and isinstance(value, int)}


def find_phones(text: str, default_region: str | None = "BE") -> list[Entity]:
    """Every valid telephone number in `text` (see the module's rules)."""
    found = []
    region = default_region.upper() if default_region else None
    for match in PhoneNumberMatcher(text, region, leniency=Leniency.VALID):
        number = match.number
        international = match.raw_string.lstrip().startswith(("+", "00"))
        details = {
            "region": phonenumbers.region_code_for_number(number),
            "type": NUMBER_TYPES.get(phonenumbers.number_type(number), "unknown"),
            "international": phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL),
            "national": phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL),
        }
        found.append(Entity("phone", phonenumbers.format_number(number, PhoneNumberFormat.E164), match.raw_string,
                            match.start, match.end, CONFIDENCE_INTERNATIONAL if international
                            else CONFIDENCE_NATIONAL, details))
    return found
