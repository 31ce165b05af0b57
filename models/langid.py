"""Language identification of recognised text: py3langid restricted to Dutch, French, German and English.

The naive Bayes model ships inside the py3langid package (nothing is downloaded); it is loaded once per
process, lazily and under a lock, with normalised probabilities. Results use Tesseract's language codes
("nld", "fra", "deu", "eng") so they can select a Tesseract language model directly.
"""

from __future__ import annotations

import importlib.metadata
import threading
from typing import Any

TESSERACT_CODES = {"nl": "nld", "fr": "fra", "de": "deu", "en": "eng"}
MIN_LETTERS = 12  # fewer letters than this carry no reliable language signal

_identifier: Any = None
_lock = threading.Lock()


def _load() -> Any:
    global _identifier
    with _lock:
        if _identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            identifier.set_languages(sorted(TESSERACT_CODES))
            _identifier = identifier
    return _identifier


def identify_language(text: str) -> tuple[str | None, float]:
    """The language of `text` as a Tesseract code and its probability (0-1), or (None, 0.0) for text with
    fewer than MIN_LETTERS letters."""
    if sum(character.isalpha() for character in text) < MIN_LETTERS:
        return None, 0.0
    language, probability = _load().classify(text)
    return TESSERACT_CODES.get(str(language)), float(probability)


def provenance() -> dict[str, Any]:
    """The identifier's package, version and the languages it may answer."""
    try:
        version = importlib.metadata.version("py3langid")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    return {"name": "py3langid", "version": version, "languages": sorted(TESSERACT_CODES.values()),
            "min_letters": MIN_LETTERS}
