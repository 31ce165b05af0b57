"""Every analyzer module registers its analyzer, and every analyzer declares its contract."""

from __future__ import annotations

import importlib
import inspect

import pytest

from workers.analyzers import registry
from workers.analyzers.base import Analyzer


def test_every_analyzer_module_registers_an_analyzer() -> None:
    registered = registry.load_all()
    modules = registry.analyzer_modules()
    assert modules, "no analyzer modules found"
    for module_name in modules:
        module = importlib.import_module(module_name)
        defined = [obj for obj in vars(module).values()
                   if inspect.isclass(obj) and issubclass(obj, Analyzer) and obj.__module__ == module_name]
        assert defined, f"{module_name} defines no analyzer"
        for cls in defined:
            assert registered.get(cls.name) is cls, f"{module_name}.{cls.__name__} is not registered"


def test_analyzers_declare_what_they_accept_and_produce() -> None:
    for name, cls in registry.load_all().items():
        assert cls.name == name and cls.version and cls.accepts and cls.produces
        assert all("." in kind for kind in cls.produces), f"{name}: finding kinds are dotted (family.kind)"
        assert cls.num_cpus > 0


def test_spine_analyzers_are_present_and_accept_everything() -> None:
    analyzers = registry.load_all()
    for name in ("media_probe", "hashes"):
        assert analyzers[name].accepts_media("application/pdf")
        assert analyzers[name].accepts_media("image/jpeg")


def test_unknown_analyzer_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown analyzers: nope"):
        registry.select(["hashes", "nope"])
