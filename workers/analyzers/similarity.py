"""Similarity: what later cross-matching needs to find related pictures without re-reading the evidence.

For the first frame of an image (upright, 8-bit RGB; over 4096 px on its longest side downscaled, nothing
decoded beyond the pixel limit) the analyzer records two findings:

* "similarity.embedding": the 768-d scene embedding of `models.embedding.SceneEmbedder` (YOLOv8n backbone,
  pooled), rounded to 6 decimals; compare two with the cosine (`models.embedding.similarity`) to rank
  candidate pairs across a case;
* "similarity.keypoints": the local features of `models.keypoints.extract_keypoints` (ORB by default, at most
  2000, found on a grey copy at most 1024 px on its longest side), serialised as the artifact
  "keypoints.npz" (`KeypointSet.to_bytes`), so that a candidate pair is confirmed or refuted with
  `models.keypoints.verify` on two stored artifacts. A featureless image (blank, flat) is a success with
  count 0 and an empty keypoint file.

Keypoint coordinates are in the pixels of the analysed frame; `image_scale` (analysed width / upright width,
1.0 unless the image was over 4096 px) maps them back to the upright evidence image.

Time on one core (2-core shared Intel Xeon with AVX-512; `taskset`, `cv2.setNumThreads(1)`, onnxruntime with
1 intra-op thread; median of 10 runs after a warm-up, two runs on a busy machine: the range of the two
medians), for ultralytics' bus.jpg resized to a 1920 x 1080 JPEG (q92):

==========================================================  ===========
step                                                        median (ms)
==========================================================  ===========
decoding (`load_frames`)                                    15
scene embedding (resize, YOLOv8n backbone)                  43-55
keypoints (ORB, grey 1024 x 576)                            47-53
`verify()` of two such keypoint sets (not part of analyze)  29-34
`analyze()` end to end (decode, embedding, keypoints, npz)  110-125
==========================================================  ===========

The keypoint file of such a photo is 78 kB. zidane.jpg at 1920 x 1080: 92-95 ms end to end.
"""

from __future__ import annotations

from typing import Any

from models.embedding import SceneEmbedder
from models.keypoints import DEFAULT_DETECTOR, Detector, KeypointSet, extract_keypoints
from models.keypoints import provenance as keypoints_provenance
from workers import imaging
from workers.analyzers.base import AnalysisLimits, Analyzer, Artifact, EvidenceFile, FindingData
from workers.analyzers.registry import register

EMBEDDING_KIND = "similarity.embedding"
KEYPOINTS_KIND = "similarity.keypoints"
KEYPOINTS_ARTIFACT = "keypoints.npz"
NPZ_CONTENT_TYPE = "application/x-npz"
MAX_SIDE = 4096
MAX_FEATURES = 2000
VECTOR_DECIMALS = 6


@register
class SimilarityAnalyzer(Analyzer):
    """Scene embedding and local keypoints of the first frame of an image, for cross-matching evidence."""

    name = "similarity"
    version = "1.0.0"
    accepts = frozenset({"image/*"})
    produces = frozenset({EMBEDDING_KIND, KEYPOINTS_KIND})
    sensitive_fields = frozenset({"vector"})  # the scene embedding
    num_cpus = 1.0

    def __init__(self, detector: Detector = DEFAULT_DETECTOR, max_features: int = MAX_FEATURES,
                 threads: int = 1) -> None:
        if max_features < 1:
            raise ValueError("max_features must be at least 1")
        self.detector = detector
        self.max_features = max_features
        self.threads = threads
        self._embedder: SceneEmbedder | None = None

    @property
    def embedder(self) -> SceneEmbedder:
        """The loaded scene embedder; `load()` must have run."""
        if self._embedder is None:
            raise RuntimeError("SimilarityAnalyzer is not loaded; call load() first (once per worker)")
        return self._embedder

    def load(self) -> None:
        """Register the HEIC/HEIF opener, then load the embedder (weights verified) and warm it up."""
        imaging.register_heif_opener()
        if self._embedder is None:
            embedder = SceneEmbedder(intra_op_num_threads=self.threads)
            embedder.load()
            self._embedder = embedder

    def provenance(self) -> dict[str, Any]:
        """The embedding model (weights sha256, licence, pooling) and the keypoint implementation."""
        return {"embedder": self.embedder.provenance(), "keypoints": self._keypoints_provenance()}

    def _keypoints_provenance(self) -> dict[str, Any]:
        return {**keypoints_provenance(), "detector": self.detector, "max_features": self.max_features}

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        """A "similarity.embedding" and a "similarity.keypoints" finding for the image's first frame."""
        embedder = self.embedder
        frame = imaging.load_frames(item.path, limits.max_image_pixels, max_frames=1, max_side=MAX_SIDE)[0]
        vector = embedder.predict(frame.pixels)
        keypoints = extract_keypoints(frame.pixels, max_features=self.max_features, detector=self.detector)
        embedding = {"model": embedder.provenance(), "dimension": int(vector.shape[0]),
                     "vector": [round(float(value), VECTOR_DECIMALS) for value in vector], "frame": frame.index}
        return [
            FindingData(EMBEDDING_KIND, embedding, label=f"scene embedding ({vector.shape[0]}-d)"),
            FindingData(KEYPOINTS_KIND, self._keypoints_data(keypoints, frame),
                        label=f"{len(keypoints)} {keypoints.detector} keypoints",
                        artifacts=[Artifact(KEYPOINTS_ARTIFACT, NPZ_CONTENT_TYPE, keypoints.to_bytes())]),
        ]

    def _keypoints_data(self, keypoints: KeypointSet, frame: imaging.Frame) -> dict[str, Any]:
        width, height = keypoints.image_size
        return {"detector": keypoints.detector, "count": len(keypoints), "image_scale": frame.scale,
                "image_size": [width, height], "upright_size": list(frame.upright_size),
                "analysis_scale": keypoints.scale, "frame": frame.index, "artifact": KEYPOINTS_ARTIFACT,
                "model": self._keypoints_provenance()}
