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


def test_actor_cpu_shares_fit_the_cluster() -> None:
    from workers.service import cpu_shares

    analyzers = registry.load_all()
    small = cpu_shares(analyzers, cluster_cpus=1.0, actors_per_analyzer=2)
    assert sum(small.values()) * 2 <= 1.0 + 1e-6 and all(share > 0 for share in small.values())
    roomy = cpu_shares(analyzers, cluster_cpus=1000.0)
    assert roomy == {name: cls.num_cpus for name, cls in analyzers.items()}
    from workers.service import matcher_cpus

    with_matcher = cpu_shares(analyzers, cluster_cpus=2.0, reserved=matcher_cpus(2.0))
    assert sum(with_matcher.values()) + matcher_cpus(2.0) <= 2.0 + 1e-6  # the matcher actor still fits


def test_importing_the_analyzers_loads_no_model_runtime() -> None:
    """The dispatcher imports every analyzer module; models load in actors, never at import time."""
    import subprocess
    import sys

    code = ("import sys; from workers.analyzers import registry; registry.load_all(); "
            "print(sorted(m for m in ('torch', 'ultralytics', 'onnxruntime', 'dlib', 'facenet_pytorch', "
            "'rapidocr', 'tensorflow') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
