"""Landmarks of the faces in a photo, from a checkpoint or an exported model.

    predictor = Predictor("runs/wflw")                      # or Predictor.from_export(path)
    landmarks = predictor.predict(image, boxes)             # (N, L, 2) photo pixels

Each face is cropped exactly as evaluation crops it: the face square of its box at the config's
``box_scale``, resampled to ``input_size`` (:func:`awing_jax.crop.face_square_matrix`). The model
sees the crop, its last stack's heatmaps are decoded with the config's decoder, and the landmarks
go back through the inverse of the crop matrix, so they are 0-based pixel-centre coordinates of
the photo.

Without boxes the faces are found by a detector (:func:`detect_faces`). Its boxes are not the
boxes the model was trained with (WFLW's, 300W's, ...), so given boxes from the dataset's own
protocol predict better.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import cv2
import jax
import numpy as np

from awing_jax import checkpoint, crop, export
from awing_jax.landmarks import get_scheme
from awing_jax.models import create_model

# Input pixels per heatmap pixel, and the input position of heatmap pixel 0's centre: heatmap
# pixel j covers input pixels [4j - 0.5, 4j + 3.5) (see awing_jax.targets).
STRIDE = 4
HEATMAP_OFFSET = (STRIDE - 1) / 2.0
# The frontal-face Haar cascade that OpenCV 4.x wheels ship in cv2.data.haarcascades.
HAAR_CASCADE = "haarcascade_frontalface_default.xml"


class FaceDetectorUnavailable(RuntimeError):
    """No face detector can run: boxes must be given."""


def read_image(path: str) -> np.ndarray:
    """The (H, W, 3) uint8 RGB image at ``path``; errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such image file: {path}")
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read {path} as an image (not an image, or a format OpenCV "
                         "cannot decode)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _bundled_cascade() -> str | None:
    directory = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = os.path.join(directory, HAAR_CASCADE) if directory else None
    return path if path and os.path.isfile(path) and hasattr(cv2, "CascadeClassifier") else None


def detect_faces(image: np.ndarray, detector: str | None = None) -> np.ndarray:
    """Face boxes ``(x1, y1, x2, y2)`` (N, 4) of an RGB image, outer pixel edges, left to right.

    Args:
      image: (H, W, 3) uint8 RGB.
      detector: ``None`` for the frontal-face Haar cascade bundled with OpenCV, or a model file:
        a Haar cascade ``.xml`` (needs ``cv2.CascadeClassifier``) or a YuNet ``.onnx`` face
        detector (``cv2.FaceDetectorYN``).

    Raises:
      FaceDetectorUnavailable: no detector given and the installed OpenCV bundles none. OpenCV 5
        moved ``CascadeClassifier`` out of its main modules and its wheels carry no cascade
        files; the only face detector left, ``cv2.FaceDetectorYN``, needs a model file.
    """
    if detector is None:
        detector = _bundled_cascade()
        if detector is None:
            raise FaceDetectorUnavailable(
                f"OpenCV {cv2.__version__} bundles no face detector (no Haar cascade in "
                "cv2.data, no cv2.CascadeClassifier); give the face boxes, or a detector model "
                "file: a YuNet .onnx for cv2.FaceDetectorYN or a Haar cascade .xml")
    if not os.path.isfile(detector):
        raise FileNotFoundError(f"no such face detector file: {detector}")
    if detector.endswith(".onnx"):
        height, width = image.shape[:2]
        yunet = cv2.FaceDetectorYN.create(detector, "", (width, height))
        _, faces = yunet.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rects = np.zeros((0, 4)) if faces is None else faces[:, :4]
    elif hasattr(cv2, "CascadeClassifier"):
        cascade = cv2.CascadeClassifier(detector)
        if cascade.empty():
            raise ValueError(f"cannot load {detector} as a Haar cascade")
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        min_side = max(24, min(image.shape[:2]) // 20)
        rects = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                         minSize=(min_side, min_side))
    else:
        raise FaceDetectorUnavailable(
            f"OpenCV {cv2.__version__} has no cv2.CascadeClassifier to run {detector}; "
            "use a YuNet .onnx detector or give the face boxes")
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    # (x, y, w, h) of whole pixels -> the pixel-centre coordinates of the rectangle's outer edges.
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) - 0.5
    return boxes[np.argsort(boxes[:, 0], kind="stable")]


def photo_to_heatmap_matrix(crop_matrix) -> np.ndarray:
    """The 2x3 map from photo pixels to heatmap pixels of the crop that ``crop_matrix`` makes."""
    input_to_heatmap = np.array([[1.0 / STRIDE, 0.0, -HEATMAP_OFFSET / STRIDE],
                                 [0.0, 1.0 / STRIDE, -HEATMAP_OFFSET / STRIDE]])
    return crop.compose(input_to_heatmap, crop_matrix)


def boundary_in_photo(boundaries: np.ndarray, crop_matrices: np.ndarray,
                      shape: tuple[int, int]) -> np.ndarray:
    """The (N, h, w) boundary heatmaps of N faces resampled into one (H, W) photo map in [0, 1]
    (the maximum over faces; 0 outside every crop)."""
    height, width = shape
    out = np.zeros((height, width), np.float32)
    for heatmap, matrix in zip(boundaries, crop_matrices, strict=True):
        photo = cv2.warpAffine(
            np.clip(heatmap, 0.0, 1.0).astype(np.float32), photo_to_heatmap_matrix(matrix),
            (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out = np.maximum(out, photo)
    return out


@dataclasses.dataclass(frozen=True)
class FacePrediction:
    """What :meth:`Predictor.run` finds in one photo.

    Attributes:
      boxes: (N, 4) face boxes ``(x1, y1, x2, y2)``, given or detected.
      landmarks: (N, L, 2) ``(x, y)`` photo pixels.
      crop_matrices: (N, 2, 3) photo -> model-input maps of the faces' crops.
      boundaries: (N, S/4, S/4) the predicted boundary heatmap of each crop, or None for a model
        without a boundary channel (or without heatmaps).
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    crop_matrices: np.ndarray
    boundaries: np.ndarray | None


class Predictor:
    """A face-alignment model that takes photos and face boxes.

    ``Predictor(workdir, step)`` loads a training (or converted) checkpoint;
    :meth:`from_export` an exported model; :meth:`from_function` wraps any function with the
    exported function's contract (tests use it to put an oracle in place of the network).

    Attributes:
      input_size: model input side S.
      box_scale: face-square side / box longer side.
      scheme: landmark scheme name.
      landmark_scheme: the :class:`~awing_jax.landmarks.LandmarkScheme` (point names of schemes
        from the data).
      num_landmarks: L.
      boundary: whether the model predicts a boundary channel (the last).
    """

    def __init__(self, checkpoint_dir: str, step: str | int = "best"):
        manager = checkpoint.create_manager(checkpoint_dir, read_only=True)
        step = checkpoint.resolve_step(manager, step)
        config = checkpoint.restore_config(manager, step)
        variables = checkpoint.restore_variables(manager, step)
        model = create_model(config, bn_axis_name=None)
        self._setup(jax.jit(export.landmark_function(config)), export.metadata(config),
                    variables=variables)
        self._heatmaps = jax.jit(lambda v, x: model.apply(v, x, train=False))

    @classmethod
    def from_export(cls, path: str) -> Predictor:
        """A predictor running an artifact of :mod:`awing_jax.export` (no model code involved)."""
        fn, meta = export.load(path)
        return cls.from_function(fn, input_size=meta["input_size"], box_scale=meta["box_scale"],
                                 scheme=meta.get("scheme_definition") or meta["scheme"],
                                 boundary=meta["boundary"])

    @classmethod
    def from_function(cls, fn: Callable, *, input_size: int, box_scale: float, scheme,
                      boundary: bool = True) -> Predictor:
        """A predictor around ``fn(images uint8 (B, S, S, 3)) -> (landmarks (B, L, 2) input
        pixels, heatmaps (B, S/4, S/4, C))``, the contract of an exported model."""
        predictor = cls.__new__(cls)
        meta = {"input_size": input_size, "box_scale": box_scale, "scheme": scheme,
                "boundary": boundary}
        predictor._setup(lambda _, images: fn(images), meta, variables=None)
        predictor._heatmaps = None
        return predictor

    def _setup(self, infer: Callable, meta: dict, *, variables) -> None:
        self._infer = infer
        self._variables = variables
        self.input_size = int(meta["input_size"])
        self.box_scale = float(meta["box_scale"])
        self.landmark_scheme = get_scheme(meta.get("scheme_definition") or meta["scheme"])
        self.scheme = self.landmark_scheme.name
        self.num_landmarks = self.landmark_scheme.num_landmarks
        self.boundary = bool(meta["boundary"])

    def crop_faces(self, image: np.ndarray, boxes) -> tuple[np.ndarray, np.ndarray]:
        """The model inputs of ``boxes`` (N, 4) in ``image``: ((N, S, S, 3) uint8 crops,
        (N, 2, 3) photo -> crop matrices), the face squares evaluation crops."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        crops, matrices = [], []
        for box in boxes:
            face, matrix = crop.crop_face(image, box, self.input_size, self.box_scale)
            crops.append(face)
            matrices.append(matrix)
        size = self.input_size
        return (np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
                np.stack(matrices) if matrices else np.zeros((0, 2, 3)))

    def run(self, image: np.ndarray, boxes=None, *, detector: str | None = None
            ) -> FacePrediction:
        """Landmarks and boundary heatmaps of the faces in ``boxes``, or of the detected ones.

        Args:
          image: (H, W, 3) uint8 RGB photo.
          boxes: (N, 4) ``(x1, y1, x2, y2)`` face boxes in photo pixels, or None to detect.
          detector: detector model file for :func:`detect_faces` (when ``boxes`` is None).
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} "
                             f"{image.shape}")
        if boxes is None:
            boxes = detect_faces(image, detector)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        crops, matrices = self.crop_faces(image, boxes)
        num = self.num_landmarks
        if not len(boxes):
            empty = np.zeros((0, self.input_size // STRIDE, self.input_size // STRIDE))
            return FacePrediction(boxes, np.zeros((0, num, 2)), matrices,
                                  empty if self.boundary else None)
        landmarks, heatmaps = self._infer(self._variables, crops)
        landmarks = np.asarray(landmarks, dtype=np.float64)
        photo = np.stack([crop.apply(crop.invert(m), pts)
                          for m, pts in zip(matrices, landmarks, strict=True)])
        boundaries = None
        if self.boundary and heatmaps is not None:
            boundaries = np.asarray(heatmaps)[..., num]
        return FacePrediction(boxes, photo, matrices, boundaries)

    def predict(self, image: np.ndarray, boxes=None, *, detector: str | None = None
                ) -> np.ndarray:
        """(N, L, 2) landmarks in photo pixels of the faces in ``boxes`` (or detected ones)."""
        return self.run(image, boxes, detector=detector).landmarks

    def boundary_map(self, image: np.ndarray, boxes=None, *, detector: str | None = None
                     ) -> np.ndarray:
        """(H, W) the predicted facial boundary of every face, in photo pixels, in [0, 1]."""
        result = self.run(image, boxes, detector=detector)
        if result.boundaries is None:
            raise ValueError("this model predicts no boundary heatmap")
        return boundary_in_photo(result.boundaries, result.crop_matrices, image.shape[:2])

    def heatmaps(self, images) -> list[np.ndarray]:
        """Every stack's raw output (B, S/4, S/4, C) for (B, S, S, 3) crops in [0, 1]."""
        if self._heatmaps is None:
            raise ValueError("per-stack heatmaps need the model: load a checkpoint, not an "
                             "exported function")
        outputs = self._heatmaps(self._variables, np.asarray(images))
        if not isinstance(outputs, list | tuple):
            raise ValueError("this model regresses coordinates; it has no heatmaps")
        return [np.asarray(h) for h in outputs]


def draw_overlay(image: np.ndarray, prediction: FacePrediction, *, boundary_alpha: float = 0.7,
                 point_colour=(255, 40, 40), boundary_colour=(0, 255, 255),
                 box_colour=(255, 200, 0)) -> np.ndarray:
    """The photo with each face's box, landmarks and predicted boundary blended in (RGB uint8)."""
    out = image.astype(np.float32)
    if prediction.boundaries is not None and len(prediction.boxes):
        weight = boundary_alpha * boundary_in_photo(prediction.boundaries,
                                                    prediction.crop_matrices, image.shape[:2])
        out = out * (1.0 - weight[..., None]) + np.float32(boundary_colour) * weight[..., None]
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    shift = 4  # sub-pixel bits of cv2's drawing calls
    scale = 1 << shift
    radius = max(1, round(max(image.shape[:2]) / 300))
    for box, points in zip(prediction.boxes, prediction.landmarks, strict=True):
        corners = np.round(np.asarray(box).reshape(2, 2) * scale).astype(int)
        cv2.rectangle(out, tuple(corners[0]), tuple(corners[1]), box_colour, radius,
                      cv2.LINE_AA, shift)
        for x, y in np.round(points * scale).astype(int):
            cv2.circle(out, (int(x), int(y)), radius * scale, point_colour, -1, cv2.LINE_AA, shift)
    return out
