"""The entity record shared by every extractor, and the helpers they use to build one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("national_number", "plate", "phone", "iban", "email", "date")


@dataclass(frozen=True)
class Entity:
    """One entity found in a text.

    `value` is the normalised form (what is compared across evidence), `raw` the text as found, `start`/`end`
    character offsets into the text given (``text[start:end] == raw``), `confidence` 0-1 and `details` the
    family's own fields (always JSON-safe: strings, numbers, booleans, None and lists of them).
    """

    kind: str  # "national_number" | "plate" | "phone" | "iban" | "email" | "date"
    value: str
    raw: str
    start: int
    end: int
    confidence: float
    details: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for findings."""
        return {"kind": self.kind, "value": self.value, "raw": self.raw, "start": self.start, "end": self.end,
                "confidence": self.confidence, "details": _json_safe(self.details)}


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
