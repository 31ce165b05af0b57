"""IBANs (ISO 13616): country code, two check digits and the national account number (BBAN).

Rules:

* written compact or with single spaces (normally groups of four), in any case; the country must be in
  IBAN_LENGTHS (the SEPA countries and a few neighbours) and the IBAN exactly that country's length;
* the ISO 7064 mod-97 check must give 1, and the check digits must be 02-98 (00, 01 and 99 are never issued);
* Belgian IBANs also carry the Belgian account check: the last two digits of the twelve-digit account are its
  first ten digits mod 97 (97 when that is 0). An IBAN failing any check is not an entity;
* guards: the IBAN starts at a word boundary and ends where a word ends (the next character is not a letter
  or digit), so "BE71 0961 2345 6769 op naam van" stops before "op", and a longer run is not cut short.
"""

from __future__ import annotations

import re

from workers.entities.model import Entity

# Lengths of the whole IBAN, by country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GI": 23, "GL": 18, "GR": 27, "HR": 21, "HU": 28,
    "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18,
    "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "VA": 22,
}
MIN_BBAN, MAX_BBAN = 11, 27
# Country code and check digits, then BBAN characters with an optional single space before each.
IBAN_START = re.compile(r"(?<![^\W_])([A-Za-z]{2}\d{2}(?:[ \u00a0]?[A-Za-z0-9]){11,27})")
CONFIDENCE = 0.99


def iban_valid(compact: str) -> bool:
    """ISO 13616 check of an uppercase compact IBAN: known country, its length, check digits and mod 97."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum() or not compact.isascii():
        return False
    if not 2 <= int(compact[2:4]) <= 98:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def belgian_account_valid(bban: str) -> bool:
    """The Belgian account check: twelve digits, the last two are the first ten mod 97 (97 when 0)."""
    if len(bban) != 12 or not bban.isdigit():
        return False
    return int(bban[10:]) == (int(bban[:10]) % 97 or 97)


def find_ibans(text: str) -> list[Entity]:
    """Every valid IBAN in `text` (see the module's rules)."""
    found, position = [], 0
    while match := IBAN_START.search(text, position):
        position = match.start() + 1  # a greedy match may run into the next IBAN: search again from here
        entity = _iban_at(text, match)
        if entity is not None:
            found.append(entity)
            position = entity.end
    return found


def _iban_at(text: str, match: re.Match[str]) -> Entity | None:
    """The IBAN starting where `match` starts: its country's length of characters, ending where a word ends."""
    country = match.group(1)[:2].upper()
    length = IBAN_LENGTHS.get(country)
    if length is None:
        return None
    taken, end = 0, match.start()
    while taken < length and end < match.end():
        if text[end].isalnum():
            taken += 1
        end += 1
    if taken < length or (end < len(text) and text[end].isalnum()):
        return None
    raw = text[match.start():end]
    compact = re.sub(r"\s", "", raw).upper()
    if not iban_valid(compact):
        return None
    details: dict[str, object] = {"country": country,
                                  "formatted": " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))}
    if country == "BE":
        if not belgian_account_valid(compact[4:]):
            return None
        details["account"] = f"{compact[4:7]}-{compact[7:14]}-{compact[14:]}"
    return Entity("iban", compact, raw, match.start(), end, CONFIDENCE, details)
