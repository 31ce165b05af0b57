"""Generated register files (CSV and JSON Lines) for the import tests and the import-rate measurement.

Rows are computed from their index, so a file of any size is written line by line and never held in memory.
National numbers follow the published check rule (none is a real person's); plates are Belgian-style
("1-ABC-234"), unique up to 17 million rows.
"""

from __future__ import annotations

import csv
import json
import string
from collections.abc import Iterator, Mapping
from pathlib import Path

from storage.identifiers import check_number
from storage.persons import PERSON_FIELDS
from storage.vehicles import VEHICLE_FIELDS

FAMILY_NAMES = ("Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems", "Claes", "Goossens", "Wouters",
                "De Smet", "Dubois", "Lambert", "Dupont", "Martin", "Liégeois", "Müller")
GIVEN_NAMES = ("Marie", "Jan", "Sofie", "Luc", "Anne", "Pieter", "Élodie", "Thomas", "Nathalie", "Koen")
MAKES = (("Volkswagen", "Golf"), ("Renault", "Clio"), ("Peugeot", "208"), ("BMW", "320d"), ("Toyota", "Yaris"))
COLOURS = ("black", "white", "grey", "blue", "red", "silver")
LETTERS = string.ascii_uppercase


def national_number(index: int) -> str:
    """A valid national number (born 1930-1999) for each index below about 23 million, all different."""
    serial = index % 997 + 1
    day = index // 997
    yy, mm, dd = 30 + day // (12 * 28) % 70, 1 + day // 28 % 12, 1 + day % 28
    first_nine = f"{yy:02d}{mm:02d}{dd:02d}{serial:03d}"
    return f"{first_nine}{check_number(first_nine, False):02d}"


def birth_date(number: str) -> str:
    return f"19{number[:2]}-{number[2:4]}-{number[4:6]}"


def bad_check(number: str) -> str:
    """The same number with a wrong check number."""
    return f"{number[:9]}{(int(number[9:]) % 97) + 1:02d}"


def plate(index: int) -> str:
    letters = index // 1000 % 17576
    return (f"{1 + index // 17_576_000 % 9}-{LETTERS[letters // 676]}{LETTERS[letters // 26 % 26]}"
            f"{LETTERS[letters % 26]}-{index % 1000:03d}")


def person(index: int) -> dict[str, str]:
    number = national_number(index)
    return {"national_number": number, "family_name": FAMILY_NAMES[index % len(FAMILY_NAMES)],
            "given_names": GIVEN_NAMES[index % len(GIVEN_NAMES)], "date_of_birth": birth_date(number),
            "nationality": "BE"}


def vehicle(index: int) -> dict[str, str]:
    make, model = MAKES[index % len(MAKES)]
    stolen = index % 50 == 7
    return {"plate": plate(index), "country": "BE", "make": make, "model": model,
            "colour": COLOURS[index % len(COLOURS)],
            "owner_national_number": national_number(index) if index % 3 else "",
            "status": "stolen" if stolen else "none", "status_authority": "Police Bruxelles" if stolen else "",
            "status_date": "2026-01-15" if stolen else ""}


# Ten ways a person row can be wrong, each with (part of) the reason the import gives.
BAD_PERSONS: tuple[tuple[Mapping[str, str], str], ...] = (
    ({"national_number": "bad-check"}, "fails its check number"),
    ({"national_number": "1234567890"}, "is not eleven digits"),
    ({"national_number": ""}, "national_number is empty"),
    ({"family_name": ""}, "family_name is empty"),
    ({"date_of_birth": "31/02/1990"}, "is not a date (YYYY-MM-DD)"),
    ({"date_of_birth": "1990-02-31"}, "is not a date of the calendar"),
    ({"date_of_birth": "1901-01-01"}, "differs from the national number's"),
    ({"nationality": "BEL"}, "is not a two-letter country code"),
    ({"family_name": "x" * 201}, "longer than 200 characters"),
    ({"given_names": "Jan\x07"}, "contains control characters"),
)


def bad_person(index: int, kind: int) -> dict[str, str]:
    row = person(index)
    changes = dict(BAD_PERSONS[kind][0])
    if changes.get("national_number") == "bad-check":
        changes["national_number"] = bad_check(row["national_number"])
    return {**row, **changes}


def person_rows(count: int, *, bad: Mapping[int, int] | None = None) -> Iterator[dict[str, str]]:
    """`count` person rows; `bad` maps row indexes to a kind of BAD_PERSONS."""
    bad = bad or {}
    for index in range(count):
        yield bad_person(index, bad[index]) if index in bad else person(index)


def vehicle_rows(count: int, *, start: int = 0) -> Iterator[dict[str, str]]:
    for index in range(start, start + count):
        yield vehicle(index)


def write_csv(path: Path, rows: Iterator[Mapping[str, str]], *, fields: tuple[str, ...]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(fields))
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def write_jsonl(path: Path, rows: Iterator[Mapping[str, str]]) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def persons_csv(path: Path, count: int, *, bad: Mapping[int, int] | None = None) -> Path:
    return write_csv(path, person_rows(count, bad=bad), fields=PERSON_FIELDS)


def vehicles_csv(path: Path, count: int, *, start: int = 0) -> Path:
    return write_csv(path, vehicle_rows(count, start=start), fields=VEHICLE_FIELDS)
