"""One way to write a model wrapper: every class in `models/` that loads weights or an engine is a `models.base.Model`.

A wrapper written outside the base (its own `load`/`predict`, or a loader cached in a module global) fails
here, as does a module that loads a model when it is imported.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import models
from models.base import Model, ModelError
from models.langid import MIN_LETTERS, LanguageIdentifier
from models.minutiae import MinutiaeLoader, encode_iso_19794_2
from models.ocr import TesseractOcr
from models.plates import TesseractPlateReader

ROOT = Path(__file__).resolve().parents[1]
MODEL_MODULES = sorted(f"models.{info.name}" for info in pkgutil.iter_modules(models.__path__))
# What makes a class a wrapper: it loads something, or predicts with what it loaded.
WRAPPER_MEMBERS = ("load", "loaded", "predict", "_load", "_predict")
# Module globals that are set later (`global`): only the HEIF decoder's registration with Pillow, which is no model.
GLOBAL_STATE = {"models.pillow": {"_heif_registered"}}


def _classes(module: str) -> list[type]:
    loaded = importlib.import_module(module)
    return [cls for _, cls in inspect.getmembers(loaded, inspect.isclass) if cls.__module__ == module]


def test_the_model_modules_are_found() -> None:
    assert {"models.base", "models.langid", "models.minutiae", "models.ocr", "models.plates", "models.yolo",
            "models.faces", "models.fingerprints", "models.scenetext", "models.embedding"} <= set(MODEL_MODULES)


@pytest.mark.parametrize("module", MODEL_MODULES)
def test_every_wrapper_derives_from_model(module: str) -> None:
    outside = [cls.__qualname__ for cls in _classes(module) if cls is not Model
               and any(hasattr(cls, member) for member in WRAPPER_MEMBERS) and not issubclass(cls, Model)]
    assert outside == [], f"{module}: {outside} load or predict outside models.base.Model"


@pytest.mark.parametrize("module", MODEL_MODULES)
def test_no_loader_is_cached_in_a_module_global(module: str) -> None:
    source = Path(importlib.import_module(module).__file__ or "").read_text()
    names = {name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Global) for name in node.names}
    assert names <= GLOBAL_STATE.get(module, set()), f"{module} keeps {sorted(names)} in module globals"


def test_importing_the_models_loads_none() -> None:
    probe = ("import importlib, json, sys\n"
             "from models.base import Model\n"
             f"modules = {MODEL_MODULES!r}\n"
             "found = {}\n"
             "for name in modules:\n"
             "    for attribute, value in vars(importlib.import_module(name)).items():\n"
             "        if isinstance(value, Model):\n"
             "            found[f'{name}.{attribute}'] = value.loaded\n"
             "heavy = sorted(m for m in ('nbis', 'py3langid', 'torch', 'onnxruntime', 'cv2') if m in sys.modules)\n"
             "print(json.dumps({'instances': found, 'heavy': heavy}))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["instances"] == {"models.langid._SHARED": False, "models.minutiae._SHARED": False}
    assert found["heavy"] == []


def test_language_identifier_is_a_model() -> None:
    model = LanguageIdentifier()
    with pytest.raises(ModelError, match="py3langid-naive-bayes is not loaded"):
        model.predict("Dit is een Nederlandse zin over het onderzoek naar sporen.")
    model.load()
    language, probability = model.predict("Dit is een Nederlandse zin over het onderzoek naar sporen.")
    assert language == "nld" and probability > 0.9
    assert model.predict("a" * (MIN_LETTERS - 1)) == (None, 0.0)
    assert model.provenance()["sha256"] == model.spec.sha256


def test_minutiae_loader_is_a_model() -> None:
    iso = encode_iso_19794_2(300, 300, np.array([[40, 50, 30, 40], [120, 80, 100, 40], [200, 220, 250, 40]]))
    model = MinutiaeLoader()
    with pytest.raises(ModelError, match="not loaded"):
        model.predict(iso)
    model.load()
    assert model.predict(iso).compare(model.predict(iso)) >= 0


@pytest.mark.parametrize("wrapper", [TesseractOcr, TesseractPlateReader])
def test_tesseract_readers_are_models_that_refuse_to_read_unloaded(wrapper: type[Model[np.ndarray, object]]) -> None:
    reader = wrapper()
    assert not reader.loaded
    with pytest.raises(ModelError, match="tesseract is not loaded"):
        reader.predict(np.zeros((40, 120, 3), np.uint8))
