"""Landmarks of the faces in a photo, from a checkpoint or an exported model.

    predictor = Predictor("runs/wflw")                      # or Predictor.from_export(path)
    landmarks = predictor.predict(image, boxes)             # (N, L, 2) photo pixels

Each face is cropped exactly as evaluation crops it, by the checkpoint's crop protocol
(:func:`awing_jax.crop.crop_geometry`): the face square of its box at the config's ``box_scale``
(``face_square``), or the authors' WFLW geometry (``awing_wflw``, converted weights; without
landmarks its step 4 cannot run, docs/crop_protocols.md), resampled to ``input_size``. The model
sees the crop, its last stack's heatmaps are decoded with the config's decoder, and the landmarks
go back through the inverse of the protocol's landmark matrix, so they are photo coordinates in
the convention of the annotations the model was trained on (0-based pixel centres for the
project's datasets).

Without boxes the faces are found by a detector (:func:`detect_faces`, :mod:`awing_jax.detectors`).
Its boxes are not the boxes the model was trained with (WFLW's, 300W's, ...), so by default each
face is predicted again from the crop of its predicted landmarks (``refine`` passes, the "GT box"
path), after trying its first crop at several sizes (``search_scales``): the landmarks then do not
depend on where the detector put the box (BENCHMARKS.md, "Refinement"). ``refine=0`` predicts from
the box's own crop, as evaluation does with the dataset's boxes.

Several photos: :meth:`Predictor.run_batch` and :meth:`Predictor.run_many` batch their faces
through the model; videos: :meth:`Predictor.video` (:mod:`awing_jax.video`); aligned faces:
:meth:`Predictor.align` (:mod:`awing_jax.align`). Each face also gets a per-landmark confidence,
its heatmap's peak value.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable

import cv2
import jax
import numpy as np

from awing_jax import checkpoint, crop, detectors, export, inference
from awing_jax.landmarks import get_scheme
from awing_jax.models import create_model
from awing_jax.models.fan import FAN

# Input pixels per heatmap pixel (the FAN's), and the input position of heatmap pixel 0's centre:
# heatmap pixel j covers input pixels [s*j - 0.5, s*j + s - 0.5) (docs/conventions.md).
STRIDE = FAN.heatmap_stride
HEATMAP_OFFSET = (STRIDE - 1) / 2.0
HAAR_CASCADE = detectors.HAAR_CASCADE
# First-pass crop sizes (multiples of the box scale) when refining; see Predictor.run_batch.
SEARCH_SCALES = (1.0, 1.3, 1.6)
FaceDetectorUnavailable = detectors.FaceDetectorUnavailable


def to_rgb8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Any decoded photo as (H, W, 3) uint8 RGB: grey is repeated into three channels, an alpha
    channel is dropped (the colour is kept as it is, not blended), 16-bit and float [0, 1]
    pixels are rescaled to 8 bits. Errors name ``name``."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"{name}: expected a grey, RGB or RGBA image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name}: the image is empty ({image.shape[1]} x {image.shape[0]} px)")
    image = image[..., :3]
    if image.dtype == np.uint16:
        image = (image.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        image = (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"{name}: unsupported pixel type {image.dtype} (expected 8 or 16 bits)")
    return np.ascontiguousarray(image)


def read_image(path: str) -> np.ndarray:
    """The (H, W, 3) uint8 RGB image at ``path``; errors name the file.

    Grey, RGBA (alpha dropped) and 16-bit images are read as 8-bit RGB (:func:`to_rgb8`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such image file: {path}")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ValueError(f"cannot read {path} as an image (not an image, or a format OpenCV "
                         "cannot decode)")
    if image.ndim == 3 and image.shape[-1] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    elif image.ndim == 3 and image.shape[-1] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return to_rgb8(image, path)


def detect_faces(image: np.ndarray, detector=None, **kwargs) -> np.ndarray:
    """Face boxes ``(x1, y1, x2, y2)`` (N, 4) of an RGB image, outer pixel edges, left to right.

    Args:
      image: (H, W, 3) uint8 RGB.
      detector: ``None`` for the default detector (``dlib-hog`` when dlib is installed, else the
        Haar cascade bundled with OpenCV), a name of :data:`awing_jax.detectors.DETECTORS`, a
        model file (a Haar/LBP cascade ``.xml``, a YuNet ``.onnx``), or a function
        ``image -> (N, 4) boxes``.
      **kwargs: ``angles``, ``min_face`` of :func:`awing_jax.detectors.detect`.

    Raises:
      FaceDetectorUnavailable: the detector's library or model is not installed.
    """
    return detectors.detect_faces(image, detector, **kwargs)


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
      confidence: (N, L) each landmark's heatmap peak value (about 1 where the model is sure,
        near 0 where it sees no such point; NaN for a model without heatmaps).
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    crop_matrices: np.ndarray
    boundaries: np.ndarray | None
    confidence: np.ndarray | None = None


class _Detected(typing.NamedTuple):
    image: np.ndarray
    boxes: np.ndarray


class Predictor:
    """A face-alignment model that takes photos and face boxes.

    ``Predictor(workdir, step)`` loads a training (or converted) checkpoint;
    :meth:`from_export` an exported model; :meth:`from_function` wraps any function with the
    exported function's contract (tests use it to put an oracle in place of the network).

    Attributes:
      input_size: model input side S.
      box_scale: face-square side / box longer side.
      crop_protocol: how boxes become crops (:data:`awing_jax.crop.PROTOCOLS`).
      scheme: landmark scheme name.
      landmark_scheme: the :class:`~awing_jax.landmarks.LandmarkScheme` (point names of schemes
        from the data).
      num_landmarks: L.
      boundary: whether the model predicts a boundary channel (the last).
      batch_size: most faces per model call (the last batch is padded to a power of two).
    """

    batch_size = 32
    _pad_batches = True

    def __init__(self, checkpoint_dir: str, step: str | int = "best", *,
                 conv_lowering: str = export.DEFAULT_CONV_LOWERING):
        """Loads checkpoint ``step`` of ``checkpoint_dir``; ``conv_lowering`` is how the model's
        convolutions run (:mod:`awing_jax.models.conv`)."""
        manager = checkpoint.create_manager(checkpoint_dir, read_only=True)
        step = checkpoint.resolve_step(manager, step)
        config = checkpoint.restore_config(manager, step)
        variables = checkpoint.restore_variables(manager, step)
        model = create_model(config, bn_axis_name=None, conv_lowering=conv_lowering)
        self._setup(jax.jit(export.landmark_function(config, conv_lowering=conv_lowering)),
                    export.metadata(config), variables=variables)
        self._heatmaps = jax.jit(lambda v, x: inference.infer(
            model, v, x, decoder=config.decoder).heatmaps)

    @classmethod
    def from_export(cls, path: str) -> Predictor:
        """A predictor running an artifact of :mod:`awing_jax.export` (no model code involved)."""
        fn, meta = export.load(path)
        predictor = cls.from_function(fn, input_size=meta["input_size"],
                                      box_scale=meta["box_scale"],
                                      scheme=meta.get("scheme_definition") or meta["scheme"],
                                      boundary=meta["boundary"],
                                      crop_protocol=meta.get("crop_protocol", "face_square"))
        predictor._pad_batches = True  # exported for any batch size; few shapes compile faster
        return predictor

    @classmethod
    def from_function(cls, fn: Callable, *, input_size: int, box_scale: float, scheme,
                      boundary: bool = True, crop_protocol: str = "face_square") -> Predictor:
        """A predictor around ``fn(images uint8 (B, S, S, 3)) -> (landmarks (B, L, 2) input
        pixels, heatmaps (B, S/4, S/4, C))``, the contract of an exported model."""
        predictor = cls.__new__(cls)
        meta = {"input_size": input_size, "box_scale": box_scale, "scheme": scheme,
                "boundary": boundary, "crop_protocol": crop_protocol}
        predictor._setup(lambda _, images: fn(images), meta, variables=None)
        predictor._heatmaps = None
        predictor._pad_batches = False  # the function's batch sizes are the caller's
        return predictor

    def _setup(self, infer: Callable, meta: dict, *, variables) -> None:
        self._infer = infer
        self._variables = variables
        self.input_size = int(meta["input_size"])
        self.box_scale = float(meta["box_scale"])
        self.crop_protocol = crop.check_protocol(meta.get("crop_protocol", "face_square"))
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
            matrix = self._crop_matrix(box)
            crops.append(crop.warp(image, matrix, self.input_size))
            matrices.append(matrix)
        size = self.input_size
        return (np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
                np.stack(matrices) if matrices else np.zeros((0, 2, 3)))

    def _crop_geometry(self, box, landmarks=None, scale: float = 1.0) -> crop.CropGeometry:
        """The checkpoint's crop protocol for one face (``scale`` multiplies the crop's side)."""
        return crop.crop_geometry(self.crop_protocol, box, self.input_size,
                                  box_scale=self.box_scale, landmarks=landmarks, zoom=scale)

    def _crop_matrix(self, box, landmarks=None, scale: float = 1.0) -> np.ndarray:
        """The photo -> input image matrix of :meth:`_crop_geometry`."""
        return self._crop_geometry(box, landmarks, scale).matrix

    def refined_geometry(self, landmarks) -> tuple[np.ndarray, np.ndarray]:
        """The crops of the "GT box" path for faces with landmarks (N, L, 2): the crop protocol
        applied to the landmarks' extent (:func:`awing_jax.crop.landmarks_box`) and, for
        ``awing_wflw``, its step 4 to the landmarks: the crop evaluation makes with
        ``eval_box="gt"``. Returns ((N, 2, 3) image matrices, (N, 2, 3) landmark matrices)."""
        landmarks = np.asarray(landmarks, np.float64).reshape(-1, self.num_landmarks, 2)
        found = [self._crop_geometry(crop.landmarks_box(p), p) for p in landmarks]
        return _stack_geometry(found)

    def refined_matrices(self, landmarks) -> np.ndarray:
        """(N, 2, 3) the image matrices of :meth:`refined_geometry`."""
        return self.refined_geometry(landmarks)[0]

    def predict_geometry(self, images, owners, matrices, landmark_matrices):
        """:meth:`predict_crops` with the crops' landmark matrices, where the protocol's
        differ from the image matrices."""
        if self.crop_protocol == "face_square":
            return self.predict_crops(images, owners, matrices)
        return self.predict_crops(images, owners, matrices, landmark_matrices)

    def infer_crops(self, crops) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The model on (B, S, S, 3) uint8 crops, ``batch_size`` at a time.

        Returns:
          (landmarks (B, L, 2) input pixels, confidence (B, L) each landmark's heatmap peak
          value, boundaries (B, S/4, S/4) or None). Batches are padded to a power of two (at most
          ``batch_size``) so that a compiled model sees few shapes.
        """
        crops = np.asarray(crops, np.uint8)
        num, size = self.num_landmarks, self.input_size
        out_l, out_c, out_b = [], [], []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            n = len(chunk)
            if self._pad_batches:
                padded = min(self.batch_size, 1 << (n - 1).bit_length())
                chunk = np.concatenate([chunk, np.zeros((padded - n, size, size, 3), np.uint8)])
            landmarks, heatmaps = self._infer(self._variables, chunk)
            out_l.append(np.asarray(landmarks, np.float64)[:n])
            if heatmaps is None:
                out_c.append(np.full((n, num), np.nan))
            else:
                heatmaps = np.asarray(heatmaps)[:n]
                out_c.append(heatmaps[..., :num].max(axis=(1, 2)).astype(np.float64))
                if self.boundary:
                    out_b.append(heatmaps[..., num])
        if not out_l:
            return (np.zeros((0, num, 2)), np.zeros((0, num)),
                    np.zeros((0, size // STRIDE, size // STRIDE)) if self.boundary else None)
        return (np.concatenate(out_l), np.concatenate(out_c),
                np.concatenate(out_b) if out_b else None)

    def predict_crops(self, images, owners, matrices, landmark_matrices=None):
        """Landmarks of faces given by crop matrices: face i is ``images[owners[i]]`` through
        ``matrices[i]`` (photo -> input), its landmarks go back through the inverse of
        ``landmark_matrices[i]`` (default: ``matrices``; they differ for ``awing_wflw``, see
        :class:`awing_jax.crop.CropGeometry`). Returns (landmarks (N, L, 2) photo pixels,
        confidence (N, L), boundaries or None)."""
        size = self.input_size
        crops = [crop.warp(images[o], m, size) for o, m in zip(owners, matrices, strict=True)]
        crops = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
        landmarks, confidence, boundaries = self.infer_crops(crops)
        labels = matrices if landmark_matrices is None else landmark_matrices
        photo = np.stack([crop.apply(crop.invert(m), pts)
                          for m, pts in zip(labels, landmarks, strict=True)]
                         ) if len(landmarks) else np.zeros((0, self.num_landmarks, 2))
        return photo, confidence, boundaries

    def run_batch(self, images, boxes=None, *, detector=None, refine: int = 1,
                  search_scales=SEARCH_SCALES, angles=(0.0,), min_face: float | None = None
                  ) -> list[FacePrediction]:
        """:meth:`run` on several photos, their faces batched together through the model.

        Args:
          images: a sequence of (H, W, 3) uint8 RGB photos (any sizes).
          boxes: None (detect in every photo), or one (N_i, 4) array (or None) per photo.
          detector, angles, min_face: see :func:`detect_faces`.
          refine: passes of re-cropping each face from its predicted landmarks (the crop
            protocol on their extent, :meth:`refined_matrices`) and predicting again; 0 keeps the
            first prediction from the given or detected box.
          search_scales: with ``refine`` > 0, each face is predicted once per scale here: its
            first crop at that multiple of the protocol's box scale, then the refine passes;
            the most confident result (mean heatmap peak of the last pass) is kept. A box too
            small, too large or off centre for the model then still has a first crop that holds
            the whole face near the trained size. Cost: ``len(search_scales) * (1 + refine)``
            model passes per face. With ``refine=0`` the face is predicted from the protocol's
            crop of its box alone.
        """
        if refine < 0:
            raise ValueError(f"refine must be >= 0, got {refine}")
        search_scales = tuple(float(v) for v in search_scales)
        if not search_scales or min(search_scales) <= 0:
            raise ValueError(f"search_scales must be positive numbers, got {search_scales}")
        images = [np.asarray(image) for image in images]
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
                raise ValueError(f"photo {i}: expected an (H, W, 3) uint8 RGB image, got "
                                 f"{image.dtype} {image.shape}")
        if boxes is None:
            boxes = [None] * len(images)
        if len(boxes) != len(images):
            raise ValueError(f"{len(boxes)} box sets for {len(images)} photos")
        per_image = []
        for image, given in zip(images, boxes, strict=True):
            found = (detect_faces(image, detector, angles=angles, min_face=min_face)
                     if given is None else given)
            per_image.append(np.asarray(found, dtype=np.float64).reshape(-1, 4))
        owners = np.array([i for i, b in enumerate(per_image) for _ in b], dtype=int)
        all_boxes = np.concatenate(per_image) if per_image else np.zeros((0, 4))
        best = None
        for scale in search_scales if refine else (1.0,):
            matrices, labels = _stack_geometry(
                [self._crop_geometry(b, scale=scale) for b in all_boxes])
            landmarks, confidence, boundaries = self.predict_geometry(images, owners, matrices,
                                                                      labels)
            for _ in range(refine):
                matrices, labels = self.refined_geometry(landmarks)
                landmarks, confidence, boundaries = self.predict_geometry(
                    images, owners, matrices, labels)
            trial = (matrices, landmarks, confidence, boundaries)
            if best is None:
                best = [None if x is None else np.array(x) for x in trial]  # copies
                continue
            better = np.nanmean(confidence, axis=1) > np.nanmean(best[2], axis=1)
            for k in range(4):
                if best[k] is not None:
                    best[k][better] = trial[k][better]
        matrices, landmarks, confidence, boundaries = best
        out = []
        for i, image_boxes in enumerate(per_image):
            sel = owners == i
            out.append(FacePrediction(image_boxes, landmarks[sel], matrices[sel],
                                      None if boundaries is None else boundaries[sel],
                                      confidence[sel]))
        return out

    def run(self, image: np.ndarray, boxes=None, *, detector=None, refine: int = 1,
            search_scales=SEARCH_SCALES, angles=(0.0,), min_face: float | None = None
            ) -> FacePrediction:
        """Landmarks and boundary heatmaps of the faces in ``boxes``, or of the detected ones.

        Args:
          image: (H, W, 3) uint8 RGB photo (:func:`read_image` or :func:`to_rgb8` make one).
          boxes: (N, 4) ``(x1, y1, x2, y2)`` face boxes in photo pixels, or None to detect.
          detector: detector for :func:`detect_faces` (when ``boxes`` is None).
          refine, search_scales: re-crop passes from the predicted landmarks and the first
            pass's crop sizes (see :meth:`run_batch`).
          angles, min_face: see :func:`awing_jax.detectors.detect`.
        """
        return self.run_batch([image], None if boxes is None else [boxes], detector=detector,
                              refine=refine, search_scales=search_scales, angles=angles,
                              min_face=min_face)[0]

    def run_many(self, items, *, detector=None, refine: int = 1, search_scales=SEARCH_SCALES,
                 angles=(0.0,), min_face: float | None = None):
        """Yields ``(key, FacePrediction)`` for an iterable of ``(key, photo)``, in order, faces
        of consecutive photos batched together (up to ``batch_size`` faces per model call).

        ``photo`` may also be an exception (a file that could not be read): it is yielded back
        as it is, in its place, for the caller to report."""
        pending = []
        faces = 0
        for key, image in items:
            if not isinstance(image, BaseException):
                # Detect now, so that the batch fills with faces, not photos.
                found = detect_faces(image, detector, angles=angles, min_face=min_face)
                faces += len(found)
                image = _Detected(image, found)
            pending.append((key, image))
            if faces >= self.batch_size:
                yield from self._flush_detected(pending, refine, search_scales)
                faces = 0
        if pending:
            yield from self._flush_detected(pending, refine, search_scales)

    def _flush_detected(self, pending, refine, search_scales):
        good = [im for _, im in pending if not isinstance(im, BaseException)]
        results = iter(self.run_batch([d.image for d in good], [d.boxes for d in good],
                                      refine=refine, search_scales=search_scales))
        out = [(k, im if isinstance(im, BaseException) else next(results)) for k, im in pending]
        pending.clear()
        return out

    def video(self, source, **options):
        """Yields ``(frame, awing_jax.video.FrameResult)`` for every frame of a video file (or
        an iterable of (frame RGB uint8, time s)): tracked, smoothed landmarks. ``options``:
        those of :class:`awing_jax.video.FaceTracker` (detector, refine, min_confidence,
        redetect_every, smoothing, angles, min_face)."""
        from awing_jax import video

        frames = video.read_video(source)[0] if isinstance(source, str | os.PathLike) else source
        return video.track_frames(self, frames, **options)

    def align(self, image: np.ndarray, landmarks, size: int = 112):
        """((N, size, size, 3) aligned faces, (N, 2, 3) similarities) for landmarks (N, L, 2)
        (or a :class:`FacePrediction`) of this predictor's scheme (:mod:`awing_jax.align`)."""
        from awing_jax import align

        if isinstance(landmarks, FacePrediction):
            landmarks = landmarks.landmarks
        return align.align_faces(image, landmarks, self.landmark_scheme, size)

    def predict(self, image: np.ndarray, boxes=None, *, detector=None, **kwargs) -> np.ndarray:
        """(N, L, 2) landmarks in photo pixels of the faces in ``boxes`` (or detected ones);
        ``kwargs`` as for :meth:`run`."""
        return self.run(image, boxes, detector=detector, **kwargs).landmarks

    def boundary_map(self, image: np.ndarray, boxes=None, *, detector=None, **kwargs
                     ) -> np.ndarray:
        """(H, W) the predicted facial boundary of every face, in photo pixels, in [0, 1]."""
        result = self.run(image, boxes, detector=detector, **kwargs)
        if result.boundaries is None:
            raise ValueError("this model predicts no boundary heatmap")
        return boundary_in_photo(result.boundaries, result.crop_matrices, image.shape[:2])

    def heatmaps(self, crops) -> list[np.ndarray]:
        """Every stack's raw output (B, S/4, S/4, C) for (B, S, S, 3) uint8 crops
        (:meth:`crop_faces`), as :func:`awing_jax.inference.infer` computes them."""
        if self._heatmaps is None:
            raise ValueError("per-stack heatmaps need the model: load a checkpoint, not an "
                             "exported function")
        crops = np.asarray(crops)
        if crops.dtype != np.uint8:
            raise ValueError(f"heatmaps() takes uint8 crops, got {crops.dtype}")
        outputs = self._heatmaps(self._variables, crops)
        if outputs is None:
            raise ValueError("this model regresses coordinates; it has no heatmaps")
        return [np.asarray(h) for h in outputs]


def _stack_geometry(geometries) -> tuple[np.ndarray, np.ndarray]:
    """((N, 2, 3) image matrices, (N, 2, 3) landmark matrices) of crop geometries."""
    if not geometries:
        return np.zeros((0, 2, 3)), np.zeros((0, 2, 3))
    return (np.stack([g.matrix for g in geometries]),
            np.stack([g.landmark_matrix for g in geometries]))


def draw_overlay(
image: np.ndarray, prediction: FacePrediction, *, boundary_alpha: float = 0.7,
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
