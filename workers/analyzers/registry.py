"""The one analyzer manager: every analyzer module registers its class here (a test checks that each does)."""

from __future__ import annotations

import importlib
import pkgutil

from workers.analyzers.base import Analyzer

_ANALYZERS: dict[str, type[Analyzer]] = {}
_INFRASTRUCTURE = {"base", "registry"}


def register(cls: type[Analyzer]) -> type[Analyzer]:
    """Class decorator that adds an analyzer to the registry under its unique name."""
    if cls.name in _ANALYZERS and _ANALYZERS[cls.name] is not cls:
        raise ValueError(f"two analyzers are named {cls.name!r}")
    for attribute in ("name", "version", "accepts", "produces"):
        if not getattr(cls, attribute, None):
            raise TypeError(f"{cls.__name__} must declare {attribute}")
    _ANALYZERS[cls.name] = cls
    return cls


def analyzer_modules() -> list[str]:
    """Every module in the analyzers package that should hold an analyzer."""
    import workers.analyzers as package

    return [f"{package.__name__}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
            if info.name not in _INFRASTRUCTURE]


def load_all() -> dict[str, type[Analyzer]]:
    """Import every analyzer module and return the registry, by name."""
    for module in analyzer_modules():
        importlib.import_module(module)
    return dict(_ANALYZERS)


def select(names: list[str] | None = None) -> dict[str, type[Analyzer]]:
    """The registered analyzers, or only those named (an unknown name is an error)."""
    registry = load_all()
    if not names:
        return registry
    unknown = sorted(set(names) - set(registry))
    if unknown:
        raise ValueError(f"unknown analyzers: {', '.join(unknown)}; known: {', '.join(sorted(registry))}")
    return {name: registry[name] for name in names}
