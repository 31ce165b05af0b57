"""OCR confusions of plate keys: the keys a plate may have been misread from, shared by the plate matcher
(`workers.matchers.plates`) and the plate search of the API (`api.routes.matches`), so both tolerate the same
misreadings. Pure functions over plate keys (`storage.identifiers.plate_key`: letters and digits, upper case, so a
missing or extra separator is already the same key).

The confusions are the pairs an OCR engine swaps on plates: 0/O, 1/I, 8/B, 5/S, 2/Z. A key is expanded by at
most MAX_SUBSTITUTIONS swaps into at most MAX_VARIANTS variants, fewest swaps first, so a lookup stays one
bounded query.
"""

from __future__ import annotations

CONFUSIONS = {"0": "O", "O": "0", "1": "I", "I": "1", "8": "B", "B": "8", "5": "S", "S": "5", "2": "Z", "Z": "2"}
MAX_SUBSTITUTIONS = 2
MAX_VARIANTS = 64


def confusion_variants(key: str, *, max_substitutions: int = MAX_SUBSTITUTIONS,
                       limit: int = MAX_VARIANTS) -> dict[str, int]:
    """The keys `key` can be misread from, by OCR confusions, with the number of swaps each needs (fewest first;
    at most `limit` variants, `key` itself excluded)."""
    found: dict[str, int] = {}
    frontier = [key]
    for swaps in range(1, max_substitutions + 1):
        following = []
        for current in frontier:
            for at, char in enumerate(current):
                if char not in CONFUSIONS:
                    continue
                variant = current[:at] + CONFUSIONS[char] + current[at + 1:]
                if variant == key or variant in found:
                    continue
                if len(found) >= limit:
                    return found
                found[variant] = swaps
                following.append(variant)
        frontier = following
    return found


def confusions_applied(read: str, matched: str) -> list[str]:
    """The characters swapped between two keys of the same length ("A8C" / "ABC" -> ["8->B at 2"])."""
    if len(read) != len(matched):
        return []
    return [f"{a}->{b} at {at + 1}" for at, (a, b) in enumerate(zip(read, matched, strict=True)) if a != b]
