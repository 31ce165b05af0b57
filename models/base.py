"""The one model base class: load (weights verified by SHA-256), warm up, predict.

A model's weights ship inside an installed package (never downloaded at run time). `ModelSpec` names the
file, its SHA-256, licence and runtime; `Model.load()` checks the file before anything reads it, so a result
can always be tied to the exact weights that produced it. Models are loaded once per worker (a Ray actor's
`__init__`), never at import time. Every inference wrapper in `models/` is a `Model` (a test checks it); an
engine that is not a pinned file (Tesseract, a system binary) checks itself in `_weights` instead of a spec.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

Runtime = Literal["onnxruntime", "torch", "ultralytics", "dlib", "opencv", "tesseract", "nbis", "py3langid"]
In = TypeVar("In")
Out = TypeVar("Out")


class ModelError(RuntimeError):
    """A model's weights are missing, altered, or cannot be loaded."""


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's weights live inside an installed package, and what they must hash to."""

    name: str
    package: str  # the distribution that ships the weights (also the import name unless `module` says otherwise)
    resource: str  # path of the weights file inside the package
    sha256: str
    licence: str
    runtime: Runtime
    input_size: tuple[int, int] | None = None
    module: str | None = None
    description: str = ""
    path: str | None = None  # an absolute file path configured by the operator, instead of a packaged resource

    def package_version(self) -> str:
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    def weights_path(self) -> Path:
        """The weights file: the configured absolute `path`, or the resource found without importing its package."""
        if self.path is not None:
            configured = Path(self.path)
            if not configured.is_absolute():
                raise ModelError(f"{self.name}: configured weights path {self.path!r} is not absolute")
            if not configured.is_file():
                raise ModelError(f"{self.name}: weights file {configured} is missing")
            return configured
        spec = importlib.util.find_spec(self.module or self.package.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(f"{self.name}: package {self.package!r} is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / self.resource
        if not path.is_file():
            raise ModelError(f"{self.name}: weights file {path} is missing")
        return path

    def verify(self) -> Path:
        """The weights file, after checking its SHA-256 against the spec."""
        path = self.weights_path()
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != self.sha256:
            raise ModelError(f"{self.name}: {path} has SHA-256 {digest.hexdigest()}, expected {self.sha256}")
        return path

    def provenance(self) -> dict[str, Any]:
        """What a finding records about the model that produced it."""
        return {"name": self.name, "package": self.package, "version": self.package_version(),
                "weights": self.path or self.resource, "sha256": self.sha256, "licence": self.licence,
                "runtime": self.runtime}


class Model(ABC, Generic[In, Out]):
    """Base of every inference wrapper: `load()` once, then `predict()` many times (thread-safe loading)."""

    spec: ClassVar[ModelSpec]

    def __init__(self) -> None:
        self._loaded = False
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def name(self) -> str:
        """What errors call the model: its spec's name."""
        return self.spec.name

    def load(self) -> None:
        """Verify the weights, load them, and warm up with one prediction."""
        with self._lock:
            if self._loaded:
                return
            self._load(self._weights())
            self._warm_up()
            self._loaded = True

    def predict(self, inputs: In) -> Out:
        if not self._loaded:
            raise ModelError(f"{self.name} is not loaded; call load() first (once per worker)")
        return self._predict(inputs)

    def _weights(self) -> Path:
        """The file `_load` reads, checked first: the spec's weights, verified against its SHA-256."""
        return self.spec.verify()

    def provenance(self) -> dict[str, Any]:
        return self.spec.provenance()

    @abstractmethod
    def _load(self, weights: Path) -> None:
        """Read the verified weights into the runtime."""

    @abstractmethod
    def _warm_up(self) -> None:
        """One prediction on a synthetic input, so the first real one is not slow."""

    @abstractmethod
    def _predict(self, inputs: In) -> Out:
        """Inference on one input."""
