"""Language identification of recognised text: py3langid restricted to Dutch, French, German and English.

The naive Bayes model ships inside the py3langid package (nothing is downloaded) and is pinned by SHA-256
(`models.specs.PY3LANGID_MODEL`). `LanguageIdentifier` is a `Model`; `identify_language` uses one instance per
process, loaded on the first text long enough to identify (never at import). Probabilities are normalised.
Results use Tesseract's language codes ("nld", "fra", "deu", "eng") so they can select a Tesseract language
model directly.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from models.base import Model
from models.specs import PY3LANGID_MODEL

TESSERACT_CODES = {"nl": "nld", "fr": "fra", "de": "deu", "en": "eng"}
MIN_LETTERS = 12  # fewer letters than this carry no reliable language signal
WARM_UP_TEXT = "Every contact leaves a trace: Locard's exchange principle."

Identified = tuple[str | None, float]


def _letters(text: str) -> int:
    return sum(character.isalpha() for character in text)


class LanguageIdentifier(Model[str, Identified]):
    """The language of a text as a Tesseract code and its probability (0-1); (None, 0.0) for text with fewer
    than MIN_LETTERS letters."""

    spec = PY3LANGID_MODEL

    def __init__(self) -> None:
        super().__init__()
        self._identifier: Any = None

    def _load(self, weights: Path) -> None:
        from py3langid.langid import LanguageIdentifier as NaiveBayes

        identifier = NaiveBayes.from_model_file(weights, norm_probs=True)
        identifier.set_languages(sorted(TESSERACT_CODES))
        self._identifier = identifier

    def _warm_up(self) -> None:
        self._predict(WARM_UP_TEXT)

    def _predict(self, inputs: str) -> Identified:
        if _letters(inputs) < MIN_LETTERS:
            return None, 0.0
        language, probability = self._identifier.classify(inputs)
        return TESSERACT_CODES.get(str(language)), float(probability)


_SHARED = LanguageIdentifier()  # loaded by the first `identify_language` that needs it


def identify_language(text: str) -> Identified:
    """The language of `text` as a Tesseract code and its probability (0-1), or (None, 0.0) for text with
    fewer than MIN_LETTERS letters (the model is not loaded for those)."""
    if _letters(text) < MIN_LETTERS:
        return None, 0.0
    if not _SHARED.loaded:
        _SHARED.load()
    return _SHARED.predict(text)


def provenance() -> dict[str, Any]:
    """The identifier's package, version and the languages it may answer."""
    try:
        version = importlib.metadata.version("py3langid")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    return {"name": "py3langid", "version": version, "languages": sorted(TESSERACT_CODES.values()),
            "min_letters": MIN_LETTERS}
