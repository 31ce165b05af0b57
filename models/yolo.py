"""COCO object detection with Ultralytics YOLOv8n, run two ways: straight on onnxruntime, or through ultralytics.

Both wrappers load the same verified ONNX export (`specs.YOLOV8N_COCO`: input 1x3x640x640, output 1x84x8400,
the 80 class names in the ONNX metadata `names`) and return the same `Detection`s, in the pixel coordinates of
the image they were given (H x W x 3, uint8, RGB).

`YoloOnnxDetector` re-implements ultralytics' predict pipeline with numpy and OpenCV so that results agree:

* letterbox: resize keeping the aspect ratio (`cv2.INTER_LINEAR`, each side rounded and kept >= 1 px), pad with
  grey 114 split evenly on both sides (`round(d - 0.1)` / `round(d + 0.1)`), to the model's static 640x640;
  for a dynamic-shape export, only up to the next multiple of the stride (ultralytics' minimum rectangle);
* RGB scaled to 0-1, NCHW float32;
* decode: the best class of each of the 8400 anchors, kept when its score is over `conf` (0.25), boxes
  (cx, cy, w, h) -> (x1, y1, x2, y2); class-aware NMS at IoU `iou` (0.7), at most `max_det` (300) boxes;
  these are ultralytics' predict defaults;
* boxes mapped back by undoing the padding and the per-axis gain, then clipped to the image.

`YoloUltralyticsDetector` hands the image to `ultralytics.YOLO(onnx, task="detect").predict` with the same
thresholds. Ultralytics opens its onnxruntime session with default options (one thread per core); it is rebuilt
with the same session options as the direct backend, and torch gets the same thread count, so that the two
are compared on equal cores.

Heavy libraries (onnxruntime, cv2, torch, ultralytics) are imported in `load`/`predict` only.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.base import Model, ModelError
from models.specs import YOLOV8N_COCO

CONF_THRESHOLD = 0.25  # ultralytics predict default
IOU_THRESHOLD = 0.7  # ultralytics predict default
MAX_DETECTIONS = 300  # ultralytics predict default
MAX_NMS_BOXES = 30_000  # ultralytics: at most this many candidates (highest scores) go into NMS
PAD_VALUE = 114
DEFAULT_STRIDE = 32


@dataclass(frozen=True)
class Detection:
    """One detected object: COCO class, confidence, and box (x1, y1, x2, y2) in the input image's pixels."""

    class_id: int
    label: str
    confidence: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Letterbox:
    """How an image was letterboxed: per-axis gain (model pixels per image pixel) and the left/top padding."""

    gain_x: float
    gain_y: float
    pad_x: int
    pad_y: int


def check_image(image: np.ndarray) -> np.ndarray:
    """The image as a contiguous H x W x 3 uint8 array; anything else is a `ValueError`."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got shape {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


def letterbox(image: np.ndarray, shape: tuple[int, int], *, auto: bool = False,
              stride: int = DEFAULT_STRIDE) -> tuple[np.ndarray, Letterbox]:
    """Resize `image` into `shape` (height, width) keeping its aspect ratio and pad with grey, as ultralytics does.

    With `auto`, the padding only reaches the next multiple of `stride` (for dynamic-shape models).
    """
    import cv2

    height, width = image.shape[:2]
    ratio = min(shape[0] / height, shape[1] / width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    pad_w, pad_h = shape[1] - new_w, shape[0] - new_h
    if auto:
        pad_w, pad_h = pad_w % stride, pad_h % stride
    half_w, half_h = pad_w / 2, pad_h / 2
    top, bottom = round(half_h - 0.1), round(half_h + 0.1)
    left, right = round(half_w - 0.1), round(half_w + 0.1)
    resized = image if (new_w, new_h) == (width, height) else cv2.resize(image, (new_w, new_h),
                                                                          interpolation=cv2.INTER_LINEAR)
    padded = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return padded, Letterbox(new_w / width, new_h / height, left, top)


def to_blob(padded: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 RGB -> 1 x 3 x H x W float32 in 0-1."""
    blob = np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32)
    blob *= np.float32(1 / 255)
    return blob


def postprocess(prediction: np.ndarray, geometry: Letterbox, image_size: tuple[int, int], *,
                conf: float = CONF_THRESHOLD, iou: float = IOU_THRESHOLD,
                max_det: int = MAX_DETECTIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N x 4, xyxy in image pixels), scores and class ids from one raw output (4 + classes) x anchors.

    `image_size` is (height, width) of the image before letterboxing.
    """
    import cv2

    scores = prediction[4:]
    best = scores.max(axis=0)
    keep = np.flatnonzero(best > conf)
    if keep.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    keep = keep[np.argsort(-best[keep], kind="stable")[:MAX_NMS_BOXES]]
    classes = scores[:, keep].argmax(axis=0)
    confidences = best[keep]
    cx, cy, w, h = prediction[:4, keep].astype(np.float64)
    xywh = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
    rects: Any = xywh  # OpenCV reads an N x 4 (x, y, w, h) array as its Rect2d sequence
    chosen = np.asarray(cv2.dnn.NMSBoxesBatched(rects, confidences.astype(np.float32), classes.astype(np.int32),
                                                conf, iou), dtype=np.int64).reshape(-1)
    chosen = chosen[np.argsort(-confidences[chosen], kind="stable")][:max_det]
    boxes = xywh[chosen].copy()
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - geometry.pad_x) / geometry.gain_x
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - geometry.pad_y) / geometry.gain_y
    height, width = image_size
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes.astype(np.float32), confidences[chosen].astype(np.float32), classes[chosen].astype(np.int64)


def parse_names(text: str) -> dict[int, str]:
    """Class names from ultralytics' ONNX metadata, e.g. "{0: 'person', 1: 'bicycle'}"."""
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ModelError(f"the ONNX metadata 'names' is not a Python literal: {exc}") from exc
    if not isinstance(names, dict) or not all(isinstance(k, int) and isinstance(v, str) for k, v in names.items()):
        raise ModelError("the ONNX metadata 'names' is not a mapping of class ids to names")
    return names


def session_options(threads: int) -> Any:
    """onnxruntime session options: `threads` intra-op threads, one inter-op thread, all graph optimisations.

    Idle pool threads sleep instead of spinning: on a node shared by several actors, spinning threads take the
    cores the other actors were given (measured: two spinning threads next to other work doubled the time).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, then the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [*(["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []), "CPUExecutionProvider"]


class YoloDetector(Model[np.ndarray, list[Detection]]):
    """Common part of the two YOLOv8n COCO backends: thresholds, thread count, class names, provenance."""

    spec = YOLOV8N_COCO
    backend: ClassVar[str]

    def __init__(self, *, intra_op_num_threads: int = 1, conf: float = CONF_THRESHOLD,
                 iou: float = IOU_THRESHOLD, max_det: int = MAX_DETECTIONS) -> None:
        super().__init__()
        if intra_op_num_threads < 1:
            raise ValueError("intra_op_num_threads must be at least 1")
        self.threads = intra_op_num_threads
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.names: dict[int, str] = {}
        self.device = "cpu"

    def provenance(self) -> dict[str, Any]:
        """The weights (name, sha256, licence), the backend and its versions, and the thresholds used."""
        return {**self.spec.provenance(), "backend": self.backend, "device": self.device,
                "intra_op_num_threads": self.threads, "conf": self.conf, "iou": self.iou, "max_det": self.max_det,
                **self._runtime_versions()}

    def _runtime_versions(self) -> dict[str, str]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__}

    def _detections(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> list[Detection]:
        return [Detection(int(cls), self.names.get(int(cls), str(int(cls))), float(score),
                          (float(box[0]), float(box[1]), float(box[2]), float(box[3])))
                for box, score, cls in zip(boxes, scores, classes, strict=True)]

    def _warm_up(self) -> None:
        self._predict(np.full((480, 640, 3), PAD_VALUE, dtype=np.uint8))


class YoloOnnxDetector(YoloDetector):
    """YOLOv8n COCO on onnxruntime directly, with ultralytics' pre- and post-processing re-implemented."""

    backend = "onnxruntime"

    def _load(self, weights: Path) -> None:
        import onnxruntime as ort

        self._session = ort.InferenceSession(str(weights), session_options(self.threads), providers=providers())
        self.device = "cuda" if self._session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        metadata = self._session.get_modelmeta().custom_metadata_map
        if "names" not in metadata:
            raise ModelError(f"{self.spec.name}: the ONNX file has no 'names' metadata")
        self.names = parse_names(metadata["names"])
        self._stride = int(metadata.get("stride", DEFAULT_STRIDE))
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        height, width = model_input.shape[2:4]
        self._dynamic = not (isinstance(height, int) and isinstance(width, int))
        fallback = self.spec.input_size or (640, 640)
        self._shape = (fallback[1], fallback[0]) if self._dynamic else (int(height), int(width))

    def _predict(self, inputs: np.ndarray) -> list[Detection]:
        image = check_image(inputs)
        padded, geometry = letterbox(image, self._shape, auto=self._dynamic, stride=self._stride)
        output = self._session.run(None, {self._input_name: to_blob(padded)})[0]
        boxes, scores, classes = postprocess(output[0], geometry, image.shape[:2], conf=self.conf, iou=self.iou,
                                             max_det=self.max_det)
        return self._detections(boxes, scores, classes)


class YoloUltralyticsDetector(YoloDetector):
    """YOLOv8n COCO through `ultralytics.YOLO` (its own letterbox, torch NMS and box scaling) on the ONNX file.

    Loading sets torch's thread count for the whole process (`torch.set_num_threads`): a worker runs one model.
    """

    backend = "ultralytics"

    def _load(self, weights: Path) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_AUTOINSTALL", "false")
        import torch
        from ultralytics import YOLO

        torch.set_num_threads(self.threads)
        # Ultralytics runs an ONNX file on the GPU only through onnxruntime's CUDA provider.
        self.device = "cuda" if torch.cuda.is_available() and len(providers()) > 1 else "cpu"
        self._yolo = YOLO(str(weights), task="detect")
        self._run(np.full((64, 64, 3), PAD_VALUE, dtype=np.uint8))  # builds ultralytics' predictor and session
        self._configure_session(weights)
        self.names = {int(k): str(v) for k, v in self._yolo.names.items()}

    def _configure_session(self, weights: Path) -> None:
        """Rebuild ultralytics' CPU onnxruntime session with this detector's session options."""
        import onnxruntime as ort

        backend: Any = getattr(getattr(self._yolo.predictor, "model", None), "backend", None)
        session = getattr(backend, "session", None)
        if session is None:
            raise ModelError("ultralytics did not open an onnxruntime session for the ONNX file")
        if session.get_providers()[0] == "CPUExecutionProvider":
            backend.session = ort.InferenceSession(str(weights), session_options(self.threads),
                                                   providers=["CPUExecutionProvider"])

    def _run(self, image: np.ndarray) -> Any:
        import cv2

        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # ultralytics takes OpenCV's BGR order
        results: Any = self._yolo.predict(bgr, conf=self.conf, iou=self.iou, max_det=self.max_det, verbose=False,
                                          device=0 if self.device == "cuda" else "cpu")
        return results[0]

    def _predict(self, inputs: np.ndarray) -> list[Detection]:
        result = self._run(check_image(inputs))
        boxes = result.boxes
        return self._detections(boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(),
                                boxes.cls.cpu().numpy().astype(np.int64))

    def _runtime_versions(self) -> dict[str, str]:
        import onnxruntime as ort
        import torch
        import ultralytics

        return {"ultralytics": ultralytics.__version__, "torch": torch.__version__, "onnxruntime": ort.__version__}
