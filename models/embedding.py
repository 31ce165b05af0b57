"""Scene embeddings from the backbone of YOLOv8n (COCO): a 768-number fingerprint of what a photo shows.

PDQ finds the same picture; local keypoints (`models.keypoints`) confirm that one picture is a part of another.
A scene embedding finds *similar* pictures: the same place or scene, cropped, re-encoded, resized, brightened
or mirrored, so that an examiner can search a case for related photos before verifying candidates.

The network is the COCO YOLOv8n ONNX export that Locard already ships for object detection (`YOLOV8N_COCO`,
weights verified by SHA-256). Loading reads it with `onnx.load`, declares two intermediate feature maps as the
graph's outputs and drops every node they do not depend on (the neck and the detection head), then opens an
onnxruntime session on the serialised graph held in memory (no file is written):

=====  =================================  ========  ======  =====================================
name   ONNX tensor                        channels  stride  block
=====  =================================  ========  ======  =====================================
p4     ``/model.6/cv2/act/Mul_output_0``  128       16      C2f at 1/16 (40 x 40 at 640 x 640)
sppf   ``/model.9/cv2/act/Mul_output_0``  256       32      SPPF, end of the backbone (20 x 20)
=====  =================================  ========  ======  =====================================

Embedding: for each map, global average pooling and GeM pooling (p = 3, activations clamped at 1e-6) of every
channel, concatenated as [p4 average, p4 GeM, sppf average, sppf GeM] (2 x (128 + 256) = 768 numbers), then
signed square root and L2 normalisation. `similarity` is the cosine. The result is deterministic (fixed graph,
sequential execution, no randomness); float32.

Preprocessing: the upright RGB image resized to 640 x 640 *without* keeping its aspect ratio (area averaging
when both sides shrink, bilinear otherwise), scaled to 0-1, NCHW float32. Measured against ultralytics'
letterbox (aspect kept, grey 114 padding), on 14 photos (bus, zidane and 12 scikit-image samples) x 10 edits
(JPEG q50; half size + JPEG q70; central 80 % and 60 % crops; an off-centre crop; a square crop; white
borders; pasted on a grey 1920 x 1080 canvas; mirrored; +30 brightness), each edit searched against the 14
originals:

=========================  =======  ===================  ===============  ====================
preprocessing              top-1    margin mean / worst  same photo mean  unrelated mean / max
=========================  =======  ===================  ===============  ====================
plain resize (chosen)      140/140  0.135 / 0.039        0.973            0.754 / 0.890
letterbox                  138/140  0.121 / -0.025       0.973            0.772 / 0.890
letterbox, padding masked  140/140  0.142 / 0.006        0.971            0.735 / 0.890
=========================  =======  ===================  ===============  ====================

(margin: cosine to the right original minus the best cosine to another one.) Probably because the letterbox's
grey bars (a quarter of a portrait photo's input) give every photo of the same shape a shared signature, and
change when a crop changes the aspect ratio (square crop: 0.962 letterbox, 0.980 plain). The letterbox is a
little more stable under heavy re-compression (0.971 against 0.959 for half size + JPEG q70), but plain
resizing ranks better and has the better worst case. P4 + SPPF was chosen over SPPF alone (worst margin
0.048, but the same photo at 0.960 on average: 0.923 for a 60 % crop, 0.939 for half size + JPEG q70)
because the finer P4 map keeps crops and re-encodes closer (0.973: 0.948, 0.959). Absolute cosines of
unrelated photos are high (median 0.744): rank against other photos rather than use a fixed threshold.

Time for a 1920 x 1080 photo on one core of a 2-core shared Intel Xeon (onnxruntime, 1 intra-op thread,
median of 10 after a warm-up, two runs): 43-55 ms for `predict` (resize and network); the cut graph alone
takes 34-40 ms at 640 x 640, where the whole YOLOv8n graph (neck and detection head too) takes 89-94 ms.
onnx, onnxruntime and OpenCV are imported where they are used, never when the module is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.base import Model, ModelError
from models.specs import YOLOV8N_COCO

EMBEDDING_VERSION = 1  # bump when anything below changes the numbers
INPUT_SIZE = 640
GEM_P = 3.0
GEM_EPS = 1e-6


@dataclass(frozen=True)
class FeatureMap:
    """An intermediate tensor of YOLOv8n that the embedding pools."""

    name: str
    tensor: str
    channels: int
    stride: int


FEATURE_MAPS: tuple[FeatureMap, ...] = (
    FeatureMap("p4", "/model.6/cv2/act/Mul_output_0", 128, 16),
    FeatureMap("sppf", "/model.9/cv2/act/Mul_output_0", 256, 32),
)
DIMENSION = 2 * sum(feature.channels for feature in FEATURE_MAPS)  # 768


def feature_graph(model: Any, outputs: list[str]) -> bytes:
    """The ONNX model (a `ModelProto`, changed in place) with `outputs` as its only outputs, serialised.

    Nodes that none of `outputs` depends on are removed, with the initializers only they used, so the
    session computes the backbone and nothing else. Each output is declared float32 with an unknown shape.
    """
    import onnx

    graph = model.graph
    if len(graph.input) != 1 or graph.input[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ModelError("expected one float32 image input in the ONNX graph")
    producers = {output: node for node in graph.node for output in node.output}
    missing = [name for name in outputs if name not in producers]
    if missing:
        raise ModelError(f"the ONNX graph has no tensor {', '.join(missing)}")
    if any(attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for node in graph.node for attribute in node.attribute):
        raise ModelError("the ONNX graph has control-flow subgraphs; only plain feed-forward graphs are cut")
    kept: set[int] = set()
    pending = list(outputs)
    while pending:
        node = producers.get(pending.pop())
        if node is not None and id(node) not in kept:
            kept.add(id(node))
            pending.extend(node.input)
    nodes = [node for node in graph.node if id(node) in kept]  # the original (topological) order
    used = {name for node in nodes for name in node.input}
    initializers = [tensor for tensor in graph.initializer if tensor.name in used]
    value_info = [info for info in graph.value_info if info.name in used]
    del graph.node[:], graph.initializer[:], graph.value_info[:], graph.output[:]
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    graph.value_info.extend(value_info)
    graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in outputs)
    return bytes(model.SerializeToString())


def resize_input(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """H x W x 3 uint8 RGB -> size x size x 3, aspect ratio not kept (area averaging when both sides shrink)."""
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got shape {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return np.ascontiguousarray(image)
    shrinking = height >= size and width >= size
    return cv2.resize(np.ascontiguousarray(image), (size, size),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def pool(feature_map: np.ndarray) -> np.ndarray:
    """Average and GeM (p = `GEM_P`) of every channel of one C x H x W map: 2 x C numbers (float64)."""
    flat = feature_map.reshape(feature_map.shape[0], -1).astype(np.float64)
    average = flat.mean(axis=1)
    gem = np.power(np.power(np.clip(flat, GEM_EPS, None), GEM_P).mean(axis=1), 1.0 / GEM_P)
    return np.concatenate([average, gem])


def embedding_from_maps(maps: list[np.ndarray]) -> np.ndarray:
    """The embedding (float32, unit length) from the feature maps, in `FEATURE_MAPS` order (C x H x W each)."""
    pooled = np.concatenate([pool(feature_map) for feature_map in maps])
    rooted = np.sign(pooled) * np.sqrt(np.abs(pooled))
    norm = float(np.linalg.norm(rooted))
    if not np.isfinite(norm) or norm == 0.0:
        raise ModelError("the feature maps pooled to a zero or non-finite vector")
    return (rooted / norm).astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (1.0: the same direction)."""
    first, second = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if first.shape != second.shape:
        raise ValueError(f"embeddings of different lengths: {first.size} and {second.size}")
    norms = float(np.linalg.norm(first) * np.linalg.norm(second))
    if norms == 0.0:
        raise ValueError("an embedding has zero length")
    return float(np.dot(first, second) / norms)


class SceneEmbedder(Model[np.ndarray, np.ndarray]):
    """A 768-d scene embedding (float32, unit length) of an H x W x 3 uint8 RGB image, from YOLOv8n's backbone."""

    spec = YOLOV8N_COCO
    similarity = staticmethod(similarity)

    def __init__(self, *, intra_op_num_threads: int = 1) -> None:
        super().__init__()
        if intra_op_num_threads < 1:
            raise ValueError("intra_op_num_threads must be at least 1")
        self.threads = intra_op_num_threads
        self.device = "cpu"
        self._session: Any = None
        self._input_name = ""

    @property
    def dimension(self) -> int:
        return DIMENSION

    def provenance(self) -> dict[str, Any]:
        """The weights (name, sha256, licence), runtime versions, and how the embedding is made from them."""
        import onnx
        import onnxruntime as ort

        return {**self.spec.provenance(), "embedding": "scene", "embedding_version": EMBEDDING_VERSION,
                "feature_maps": [{"name": feature.name, "tensor": feature.tensor, "channels": feature.channels,
                                  "stride": feature.stride} for feature in FEATURE_MAPS],
                "pooling": f"average + GeM (p={GEM_P:g}) per channel", "normalisation": "signed sqrt, L2",
                "preprocessing": f"resize to {INPUT_SIZE}x{INPUT_SIZE} (aspect not kept), RGB / 255, NCHW",
                "dimension": DIMENSION, "device": self.device, "intra_op_num_threads": self.threads,
                "onnxruntime": ort.__version__, "onnx": onnx.__version__}

    def _load(self, weights: Path) -> None:
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(weights))  # the file's SHA-256 was checked by `load`
        self._input_name = model.graph.input[0].name if model.graph.input else ""
        serialised = feature_graph(model, [feature.tensor for feature in FEATURE_MAPS])
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        providers = [*(["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []),
                     "CPUExecutionProvider"]
        self._session = ort.InferenceSession(serialised, options, providers=providers)
        self.device = "cuda" if self._session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    def _warm_up(self) -> None:
        blob = np.full((1, 3, INPUT_SIZE, INPUT_SIZE), 114 / 255, dtype=np.float32)
        outputs = self._session.run(None, {self._input_name: blob})
        for feature, output in zip(FEATURE_MAPS, outputs, strict=True):
            expected = (1, feature.channels, INPUT_SIZE // feature.stride, INPUT_SIZE // feature.stride)
            if tuple(output.shape) != expected:
                raise ModelError(f"{self.spec.name}: {feature.tensor} has shape {tuple(output.shape)}, "
                                 f"expected {expected}")

    def _predict(self, inputs: np.ndarray) -> np.ndarray:
        resized = resize_input(inputs)
        blob = np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32)
        blob *= np.float32(1 / 255)
        outputs = self._session.run(None, {self._input_name: blob})
        return embedding_from_maps([output[0] for output in outputs])
