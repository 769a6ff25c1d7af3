"""Face detectors for prediction on photos: which faces, where, before landmarks are predicted.

    boxes = detect_faces(image)                      # the default detector, (N, 4) x1, y1, x2, y2
    boxes = detect_faces(image, "haar")              # by name (see DETECTORS), or a model file
    found = detect(image, "dlib-hog", angles=(0, -30, 30))   # boxes and scores, tilted faces too

Every detector here runs offline: its model ships inside an installed wheel (nothing is
downloaded at run time). BENCHMARKS.md ("Face detectors") compares them on real photographs.

| name | library (wheel) | model |
|---|---|---|
| ``dlib-hog`` | ``dlib`` (``dlib-bin`` wheel) | HOG + linear SVM, 5 poses, compiled into dlib |
| ``dlib-cnn`` | ``dlib`` + ``face_recognition_models`` | dlib's MMOD CNN face detector |
| ``haar`` | OpenCV | the frontal-face Haar cascade in ``cv2.data`` |
| a ``.xml`` file | OpenCV | any Haar or LBP cascade (``cv2.CascadeClassifier``) |
| a ``.onnx`` file | OpenCV | a YuNet face detector (``cv2.FaceDetectorYN``) |

``detector=None`` picks :data:`DEFAULT` when its library is installed and falls back to
``haar`` otherwise (:func:`default_detector`). Detectors scan upright faces; ``angles`` also scans
the photo rotated by each angle (degrees) and merges the finds, for heads tilted further than a
detector tolerates (about ±20° for HOG and Haar), at the price of one scan per angle.

Boxes are pixel-centre coordinates of the outer pixel edges, ``(x1, y1, x2, y2)``, left to right.
Detectors disagree on where a face ends (brows or hairline, chin or neck): predict with
``refine`` passes (see :mod:`awing_jax.predict`) so that the landmarks do not depend on it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from collections.abc import Sequence

import cv2
import numpy as np

# The frontal-face Haar cascade that OpenCV 4.x wheels ship in cv2.data.haarcascades.
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
DETECTORS = ("dlib-hog", "dlib-cnn", "haar")
DEFAULT = "dlib-hog"
# Boxes of one face found at two angles overlap at least this much (intersection over union).
MERGE_IOU = 0.3


class FaceDetectorUnavailable(RuntimeError):
    """The requested face detector cannot run here (library or model missing)."""


@dataclasses.dataclass(frozen=True)
class Detections:
    """Faces found in one photo.

    Attributes:
      boxes: (N, 4) ``(x1, y1, x2, y2)``, sorted left to right.
      scores: (N,) the detector's confidence (its own scale: SVM margin, CNN score, or the
        number of merged Haar windows).
      detector: the name (or model file) that found them.
    """

    boxes: np.ndarray
    scores: np.ndarray
    detector: str


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def dlib_cnn_model_file() -> str | None:
    """dlib's MMOD face-detector weights as the ``face_recognition_models`` wheel installs them
    (located without importing that package, whose ``__init__`` needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), "models",
                        "mmod_human_face_detector.dat")
    return path if os.path.isfile(path) else None


def _haar_file() -> str | None:
    directory = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = os.path.join(directory, HAAR_CASCADE) if directory else None
    return path if path and os.path.isfile(path) and hasattr(cv2, "CascadeClassifier") else None


def available() -> list[str]:
    """The named detectors that can run with the installed packages, in :data:`DETECTORS` order."""
    ok = {"dlib-hog": _has("dlib"), "dlib-cnn": _has("dlib") and dlib_cnn_model_file() is not None,
          "haar": _haar_file() is not None}
    return [name for name in DETECTORS if ok[name]]


def default_detector() -> str:
    """:data:`DEFAULT` if it can run here, else the first of :func:`available`."""
    names = available()
    if DEFAULT in names:
        return DEFAULT
    if not names:
        raise FaceDetectorUnavailable(
            f"no face detector can run: install dlib-bin (the default, {DEFAULT!r}) or an OpenCV "
            "wheel that bundles Haar cascades; or give the face boxes, or a detector model file "
            "(a YuNet .onnx for cv2.FaceDetectorYN or a Haar/LBP cascade .xml)")
    return names[0]


def _dlib_rects_to_boxes(rects) -> np.ndarray:
    # dlib rectangles hold inclusive pixel indices: outer edges are half a pixel further out.
    return np.array([[r.left() - 0.5, r.top() - 0.5, r.right() + 0.5, r.bottom() + 0.5]
                     for r in rects], dtype=np.float64).reshape(-1, 4)


@functools.cache
def _dlib_hog():
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def _dlib_cnn(path: str):
    import dlib

    return dlib.cnn_face_detection_model_v1(path)


@functools.cache
def _cascade(path: str):
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise ValueError(f"cannot load {path} as a Haar/LBP cascade (cv2.CascadeClassifier)")
    return cascade


def _upsample_for(image: np.ndarray, min_face: float) -> int:
    # dlib's detectors see faces down to 80 px (HOG) / about 40 px (CNN) at upsample 0; each
    # upsampling halves that. Upsample while the smallest wanted face is below it, at most twice.
    return 0 if min_face >= 80 else (1 if min_face >= 40 else 2)


def _scan(image: np.ndarray, detector: str, min_face: float) -> tuple[np.ndarray, np.ndarray]:
    """One upright scan: ((N, 4) boxes, (N,) scores)."""
    if detector == "dlib-hog":
        if not _has("dlib"):
            raise FaceDetectorUnavailable("detector 'dlib-hog' needs dlib: pip install dlib-bin")
        rects, scores, _ = _dlib_hog().run(image, _upsample_for(image, min_face), 0.0)
        return _dlib_rects_to_boxes(rects), np.asarray(scores, np.float64).reshape(-1)
    if detector == "dlib-cnn":
        path = dlib_cnn_model_file()
        if not _has("dlib") or path is None:
            raise FaceDetectorUnavailable(
                "detector 'dlib-cnn' needs dlib and its model: pip install dlib-bin "
                "face_recognition_models")
        found = _dlib_cnn(path)(image, max(0, _upsample_for(image, min_face) - 1))
        return (_dlib_rects_to_boxes([d.rect for d in found]),
                np.array([d.confidence for d in found], np.float64))
    if detector.endswith(".onnx"):
        height, width = image.shape[:2]
        yunet = cv2.FaceDetectorYN.create(detector, "", (width, height))
        _, faces = yunet.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        faces = np.zeros((0, 15)) if faces is None else np.asarray(faces, np.float64)
        rects, scores = faces[:, :4], faces[:, -1]
    else:  # a cascade: "haar" or a .xml file
        path = _haar_file() if detector == "haar" else detector
        if path is None or not hasattr(cv2, "CascadeClassifier"):
            raise FaceDetectorUnavailable(
                f"OpenCV {cv2.__version__} has no Haar cascade (cv2.CascadeClassifier or "
                "cv2.data): use another detector or give the face boxes")
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        side = int(max(20, min_face))
        rects, counts = _cascade(path).detectMultiScale2(
            grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
        rects = np.asarray(rects, np.float64).reshape(-1, 4)
        scores = np.asarray(counts, np.float64).reshape(-1)
    rects = np.asarray(rects, np.float64).reshape(-1, 4)
    # (x, y, w, h) of whole pixels -> the pixel-centre coordinates of the outer edges.
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) - 0.5
    return boxes, np.asarray(scores, np.float64).reshape(-1)


def _rotation(shape, degrees: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The photo -> rotated-photo matrix that keeps every pixel, and the rotated photo's size."""
    h, w = shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(np.ceil(w * cos + h * sin)), int(np.ceil(w * sin + h * cos))
    matrix[:, 2] += [(new_w - w) / 2, (new_h - h) / 2]
    return matrix, (new_w, new_h)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of two box sets."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def _merge(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (highest score first)."""
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        if order:
            overlap = _box_iou(boxes[i:i + 1], boxes[order])[0]
            order = [j for j, o in zip(order, overlap, strict=True) if o < threshold]
    return np.asarray(keep, dtype=int)


def _as_rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"face detection needs an (H, W, 3) uint8 RGB image, got {image.dtype} "
                         f"{image.shape} (awing_jax.predict.read_image converts any photo)")
    return np.ascontiguousarray(image)


def check(detector: str) -> str:
    """``detector`` if it names a detector of :data:`DETECTORS` or an existing model file;
    otherwise a ValueError (unknown name) or FileNotFoundError (missing file) that says so."""
    name = str(detector)
    if name not in DETECTORS:
        if not name.endswith((".xml", ".onnx")):
            raise ValueError(f"unknown face detector {name!r}: use one of {', '.join(DETECTORS)} "
                             "or a model file (.xml cascade, .onnx YuNet)")
        if not os.path.isfile(name):
            raise FileNotFoundError(f"no such face detector file: {name}")
    return name


def detect(image: np.ndarray, detector: str | None = None, *, angles: Sequence[float] = (0.0,),
           min_face: float | None = None) -> Detections:
    """Faces in an RGB photo, with the detector's scores.

    Args:
      image: (H, W, 3) uint8 RGB.
      detector: a name of :data:`DETECTORS`, a cascade ``.xml`` or YuNet ``.onnx`` file,
        ``None`` for :func:`default_detector`, or a function ``image -> (N, 4) boxes`` (its own
        detector; ``angles`` and ``min_face`` do not apply).
      angles: rotations (degrees, counter-clockwise) of the photo to scan; ``(0,)`` scans it
        upright only. A face found at several angles is kept once, at its best score.
      min_face: smallest face side (pixels) to look for; ``None``: 1/20 of the photo's shorter
        side, at least 20 px.
    """
    image = _as_rgb(image)
    if callable(detector):
        boxes = np.asarray(detector(image), np.float64).reshape(-1, 4)
        order = np.argsort(boxes[:, 0], kind="stable")
        return Detections(boxes[order], np.ones(len(boxes)), getattr(detector, "__name__", "fn"))
    name = default_detector() if detector is None else check(detector)
    if min_face is None:
        min_face = max(20.0, min(image.shape[:2]) / 20)
    all_boxes, all_scores = [], []
    for degrees in angles:
        if degrees == 0:
            boxes, scores = _scan(image, name, min_face)
        else:
            matrix, size = _rotation(image.shape, degrees)
            turned = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            boxes, scores = _scan(turned, name, min_face)
            # Back to the photo: the same-size box around the face centre's original position.
            inverse = cv2.invertAffineTransform(matrix)
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2 @ inverse[:, :2].T + inverse[:, 2]
            half = (boxes[:, 2:] - boxes[:, :2]) / 2
            boxes = np.concatenate([centres - half, centres + half], axis=1)
        all_boxes.append(boxes)
        all_scores.append(scores)
    boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
    if len(angles) > 1 and len(boxes):
        keep = _merge(boxes, scores, MERGE_IOU)
        boxes, scores = boxes[keep], scores[keep]
    order = np.argsort(boxes[:, 0], kind="stable")
    return Detections(boxes[order], scores[order], name)


def detect_faces(image: np.ndarray, detector: str | None = None, **kwargs) -> np.ndarray:
    """(N, 4) face boxes ``(x1, y1, x2, y2)`` of an RGB photo, left to right (:func:`detect`)."""
    return detect(image, detector, **kwargs).boxes
