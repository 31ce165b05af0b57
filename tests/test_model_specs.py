"""Every shipped model file is where its spec says, with the SHA-256 it pins; an altered file is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.base import Model, ModelError, ModelSpec
from models.specs import ALL_SPECS


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
def test_shipped_weights_match_their_pinned_hash(spec: ModelSpec) -> None:
    assert spec.verify().is_file()
    record = spec.provenance()
    assert record["sha256"] == spec.sha256 and record["version"] != "not installed" and record["licence"]


def test_altered_or_missing_weights_are_refused(tmp_path: Path) -> None:
    weights = tmp_path / "pkg" / "w.bin"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    (tmp_path / "pkg" / "__init__.py").write_text("")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        spec = ModelSpec(name="t", package="pkg", resource="w.bin", sha256="0" * 64, licence="MIT",
                         runtime="onnxruntime")
        with pytest.raises(ModelError, match="expected 0000"):
            spec.verify()
        with pytest.raises(ModelError, match="missing"):
            ModelSpec(name="t", package="pkg", resource="nope.bin", sha256="0" * 64, licence="MIT",
                      runtime="onnxruntime").verify()
    finally:
        sys.path.remove(str(tmp_path))


def test_model_base_loads_once_and_refuses_to_predict_unloaded() -> None:
    class Doubler(Model[np.ndarray, np.ndarray]):
        spec = ALL_SPECS[0]
        loads = 0

        def _load(self, weights: Path) -> None:
            type(self).loads += 1

        def _warm_up(self) -> None:
            self._predict(np.zeros(1))

        def _predict(self, inputs: np.ndarray) -> np.ndarray:
            return inputs * 2

    model = Doubler()
    with pytest.raises(ModelError, match="not loaded"):
        model.predict(np.ones(1))
    model.load()
    model.load()
    assert Doubler.loads == 1 and model.predict(np.ones(2)).tolist() == [2.0, 2.0]


def test_readme_lists_every_model_with_its_hash() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for spec in ALL_SPECS:
        assert spec.sha256 in readme and spec.name in readme, spec.name
