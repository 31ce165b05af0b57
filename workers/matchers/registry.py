"""The one matcher manager: every matcher module registers its class here (a test checks that each does)."""

from __future__ import annotations

import importlib
import pkgutil

from storage.matches import MODALITIES
from workers.matchers.base import Matcher

_MATCHERS: dict[str, type[Matcher]] = {}
_INFRASTRUCTURE = {"base", "registry", "indexes", "image_indexes", "face_spaces"}  # indexes: what matchers search


def register(cls: type[Matcher]) -> type[Matcher]:
    """Class decorator that adds a matcher to the registry under its unique name."""
    if cls.name in _MATCHERS and _MATCHERS[cls.name] is not cls:
        raise ValueError(f"two matchers are named {cls.name!r}")
    for attribute in ("name", "version", "modality", "consumes"):
        if not getattr(cls, attribute, None):
            raise TypeError(f"{cls.__name__} must declare {attribute}")
    if cls.modality not in MODALITIES:
        raise TypeError(f"{cls.__name__}: modality {cls.modality!r} is not one of {', '.join(MODALITIES)}")
    _MATCHERS[cls.name] = cls
    return cls


def matcher_modules() -> list[str]:
    """Every module in the matchers package that should hold a matcher."""
    import workers.matchers as package

    return [f"{package.__name__}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
            if info.name not in _INFRASTRUCTURE]


def load_all() -> dict[str, type[Matcher]]:
    """Import every matcher module and return the registry, by name."""
    for module in matcher_modules():
        importlib.import_module(module)
    return dict(_MATCHERS)
