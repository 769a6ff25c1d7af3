"""The crop convention shared by the dataset builders, the input pipeline and prediction.

A face is described by a box ``(x1, y1, x2, y2)`` in 0-based pixel-centre coordinates of its
photo (see :mod:`awing_jax.landmarks`). Its *face square* is the square centred on the box centre
whose side is ``max(w, h) * scale``. Every crop in awing-jax maps a face square onto an
``out_size x out_size`` image with a similarity transform, so that the square's outer edges land on
the output's outer pixel edges:

    u = (x - cx) * out_size / side + (out_size - 1) / 2        (same for y)

Builders store a generous square (``STORED_CONTEXT`` times the box) so that training augmentation
(±50° rotation, ±15% scale, ±25 px shift at 256) never reaches outside the stored pixels; evaluation
and prediction crop the face square at the configured ``box_scale`` from it (or from the photo).

All matrices are 2x3 affine maps of pixel-centre coordinates, the convention of ``cv2.warpAffine``.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

# Stored crop side / box side. Enough for box_scale 1.25 under the paper's augmentation:
# rotation 45° needs sqrt(2), zoom-out 1.15 and a 25/256 shift bring it to 1.85 * 1.25 = 2.3.
STORED_CONTEXT = 2.5


def landmarks_box(landmarks) -> np.ndarray:
    """The landmarks' extent ``(x1, y1, x2, y2)`` of (..., L, 2): the "GT box" protocol."""
    landmarks = np.asarray(landmarks)
    return np.concatenate([landmarks.min(axis=-2), landmarks.max(axis=-2)], axis=-1)


def face_square_matrix(box, out_size: int, scale: float = 1.0) -> np.ndarray:
    """The 2x3 matrix mapping photo pixels to an ``out_size`` crop of the face square.

    Args:
      box: (4,) ``(x1, y1, x2, y2)`` face box in the source image.
      out_size: side of the output crop in pixels.
      scale: face-square side as a multiple of the box's longer side.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (np.isfinite([x1, y1, x2, y2]).all() and x2 > x1 and y2 > y1):
        raise ValueError(f"degenerate face box {box!r}: need finite x1 < x2 and y1 < y2")
    side = max(x2 - x1, y2 - y1) * scale
    k = out_size / side
    c = (out_size - 1) / 2.0
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return np.array([[k, 0.0, c - k * cx], [0.0, k, c - k * cy]], dtype=np.float64)


def to_3x3(matrix) -> np.ndarray:
    """(..., 2, 3) affine -> (..., 3, 3) homogeneous."""
    matrix = np.asarray(matrix, dtype=np.float64)
    bottom = np.broadcast_to(np.array([0.0, 0.0, 1.0]), (*matrix.shape[:-2], 1, 3))
    return np.concatenate([matrix, bottom], axis=-2)


def compose(outer, inner) -> np.ndarray:
    """The 2x3 affine ``outer ∘ inner`` (apply ``inner`` first)."""
    return (to_3x3(outer) @ to_3x3(inner))[..., :2, :]


def invert(matrix) -> np.ndarray:
    """Inverse of a (..., 2, 3) affine."""
    return np.linalg.inv(to_3x3(matrix))[..., :2, :]


def apply(matrix, points) -> np.ndarray:
    """Applies a (2, 3) affine to (..., 2) points."""
    matrix = np.asarray(matrix, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp(image: np.ndarray, matrix, out_size: int, *, interpolation=cv2.INTER_LINEAR) -> np.ndarray:
    """Resamples ``image`` (H, W[, C]) through the 2x3 ``matrix`` (source -> output pixels).

    Pixels from outside the source are black, the face-alignment convention for crops that reach
    past the photo's edge.
    """
    return cv2.warpAffine(
        image, np.asarray(matrix, dtype=np.float64), (out_size, out_size),
        flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )


def crop_face(image: np.ndarray, box, out_size: int, scale: float = 1.0):
    """Crops the face square of ``box`` from ``image``.

    Returns:
      ``(crop, matrix)``: the (out_size, out_size, C) crop and the 2x3 map from image to crop.
    """
    matrix = face_square_matrix(box, out_size, scale)
    return warp(image, matrix, out_size), matrix


# ----------------------------------------------------------------------------------------------
# Crop protocols: how a face box (and, when known, its landmarks) becomes the model's input.
#
# "face_square": the face square of the box at ``box_scale`` (above); landmarks are pixel-centre
# coordinates, the image and the landmarks go through the same matrix.
# "awing_wflw": the AWing authors' WFLW test geometry (docs/crop_protocols.md): the padded box's
# window of 200 * (w' + h') / D photo pixels resized to 450, D lowered from 250 in steps of 10 while
# a known landmark falls within 10 px of that image's edge, then the central 360 px resized to the
# input size. Their image goes through two cv2.resize calls of integer pixel windows (pixel
# centres), their landmarks through a continuous scaling by the window's nominal length: the image
# matrix and the landmark matrix differ (by about half a photo pixel and by the integer window's
# rounding), and a crop carries both (CropGeometry).

PROTOCOLS = ("face_square", "awing_wflw")
DEFAULT_PROTOCOL = "face_square"

# awing_wflw constants, as the authors' preprocessing and test loader have them.
AWING_BOX_PAD = 0.05          # step 1: each side grows by int(0.05 * size / 2)
AWING_DIVISOR = 250           # step 2: scale = (w' + h') / D, D from here ...
AWING_DIVISOR_STEP = 10       # ... lowered by this while a landmark is near the edge (step 4)
AWING_MIN_DIVISOR = 10        # step 4 stops here whatever the landmarks
AWING_FIRST_SIZE = 450        # step 3: first resized image
AWING_EDGE = 10.0             # step 4: landmarks must lie in [EDGE, FIRST_SIZE - EDGE]
AWING_SECOND_CENTRE = 225.0   # step 5: centre and scale of the second crop, in the 450 image
AWING_SECOND_SCALE = 1.8
# Box and landmark values this close to an integer are that integer before the authors' ``int()``
# casts: stored boxes go through float32 crop coordinates and come back a few 1e-5 px off.
_SNAP = 1e-3


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown crop protocol {protocol!r}: expected one of "
                         f"{', '.join(PROTOCOLS)}")
    return protocol


def _int(value: float) -> int:
    """Python's ``int()`` (truncation toward zero) of a value snapped to a near integer."""
    nearest = round(value)
    return int(nearest if abs(value - nearest) < _SNAP else value)


def _awing_window(box, landmarks=None):
    """Steps 1, 2 and 4: ``(left, top, right, bottom, length, divisor)`` of the first (450 px)
    crop.

    ``left``, ``top``, ``right``, ``bottom`` bound the integer pixel window the authors' crop
    function resizes (``int(c ± length // 2)``) and ``length = 200 * scale`` the side their
    landmark scaling divides by: the window is ``2 * (length // 2)`` pixels wide (one more or
    less where ``int`` truncates a negative value), not ``length``. Without landmarks step 4
    cannot run and the divisor stays 250.
    """
    left, top, right, bottom = (_int(float(v)) for v in box)
    if not (right > left and bottom > top):
        raise ValueError(f"degenerate face box {tuple(box)!r}: need x1 < x2 and y1 < y2 after "
                         "the integer cast")
    pad_x = int(AWING_BOX_PAD * (right - left) / 2)
    pad_y = int(AWING_BOX_PAD * (bottom - top) / 2)
    left, right = max(0, left - pad_x), right + pad_x
    top, bottom = max(0, top - pad_y), bottom + pad_y
    cx = right - (right - left) / 2
    cy = bottom - (bottom - top) / 2
    divisor = AWING_DIVISOR
    while True:
        length = 200 * ((right - left + bottom - top) / divisor)
        x0, y0 = int(cx - length // 2), int(cy - length // 2)
        window = (x0, y0, int(cx + length // 2), int(cy + length // 2), length, divisor)
        if landmarks is None or divisor - AWING_DIVISOR_STEP < AWING_MIN_DIVISOR:
            return window
        points = (np.asarray(landmarks, np.float64) - [x0, y0]) * AWING_FIRST_SIZE / length
        if not ((points < AWING_EDGE) | (points > AWING_FIRST_SIZE - AWING_EDGE)).any():
            return window
        divisor -= AWING_DIVISOR_STEP


def _resize_matrix(left: int, top: int, right: int, bottom: int, size: int) -> np.ndarray:
    """``cv2.resize`` of the pixel window ``[left, right) x [top, bottom)`` to ``size`` x
    ``size``, as a pixel-centre matrix: output pixel u samples ``left + (u + 0.5) * w / size
    - 0.5``."""
    kx, ky = size / (right - left), size / (bottom - top)
    return np.array([[kx, 0.0, kx * (0.5 - left) - 0.5], [0.0, ky, ky * (0.5 - top) - 0.5]])


def awing_matrices(box, out_size: int, landmarks=None) -> tuple[np.ndarray, np.ndarray, int]:
    """The authors' steps 1-5 as matrices.

    Returns ``(image, label, divisor)``: ``image`` the 2x3 pixel-centre map of their two
    ``cv2.resize`` calls (photo pixel -> ``out_size`` crop pixel); ``label`` the map of their
    landmark scaling, ``(x - left) * 450 / length`` then ``(X - left2) * out_size / length2``,
    from a point as the annotation writes it to continuous crop coordinates (no half-pixel
    terms: the values their decoder's ``(argmax + 0.5) * 4`` is compared with); ``divisor`` the
    D step 4 ended at.
    """
    x0, y0, x1, y1, length, divisor = _awing_window(box, landmarks)
    k1 = AWING_FIRST_SIZE / length
    length2 = 200 * AWING_SECOND_SCALE
    x2, y2 = (int(AWING_SECOND_CENTRE - length2 // 2),) * 2
    x3, y3 = (int(AWING_SECOND_CENTRE + length2 // 2),) * 2
    k2 = out_size / length2
    first = np.array([[k1, 0.0, -k1 * x0], [0.0, k1, -k1 * y0]])
    second = np.array([[k2, 0.0, -k2 * x2], [0.0, k2, -k2 * y2]])
    image = compose(_resize_matrix(x2, y2, x3, y3, out_size),
                    _resize_matrix(x0, y0, x1, y1, AWING_FIRST_SIZE))
    return image, compose(second, first), divisor


@dataclasses.dataclass(frozen=True)
class CropGeometry:
    """One face's crop under a protocol.

    Attributes:
      matrix: (2, 3) photo pixels -> input pixels, pixel centres: the image warp
        (:func:`warp`).
      landmark_matrix: (2, 3) photo landmarks as the dataset writes them -> input-pixel
        landmarks the model is trained on and evaluated against (pixel centres, the convention
        of the decoders). Equal to ``matrix`` for ``face_square``.
      protocol: the protocol's name.
      divisor: ``awing_wflw``: the divisor D step 4 ended at; None otherwise.
    """

    matrix: np.ndarray
    landmark_matrix: np.ndarray
    protocol: str
    divisor: int | None = None

    @property
    def to_photo(self) -> np.ndarray:
        """(2, 3) input-pixel landmarks -> photo landmarks (the inverse of ``landmark_matrix``)."""
        return invert(self.landmark_matrix)


def _zoom(matrix, out_size: int, zoom: float) -> np.ndarray:
    """``matrix`` followed by a zoom-out by ``zoom`` about the crop's centre."""
    if zoom == 1.0:
        return np.asarray(matrix, np.float64)
    k, c = 1.0 / zoom, (out_size - 1) / 2.0
    return compose([[k, 0.0, c - k * c], [0.0, k, c - k * c]], matrix)


def crop_geometry(protocol: str, box, out_size: int, *, box_scale: float = 1.0,
                  landmarks=None, zoom: float = 1.0) -> CropGeometry:
    """The crop of ``protocol`` for a face.

    Args:
      protocol: one of :data:`PROTOCOLS`.
      box: (4,) ``(x1, y1, x2, y2)`` face box in photo pixels (the dataset's box, a detector's,
        or the landmarks' extent for the "GT box" path).
      out_size: the model's input side.
      box_scale: ``face_square``: square side / box longer side. Unused by ``awing_wflw``
        (its window is fixed by the authors' steps).
      landmarks: (L, 2) known landmarks of the face in photo pixels (visible ones only), or None.
        ``awing_wflw`` runs step 4 with them (without: divisor 250, the first try);
        ``face_square`` ignores them.
      zoom: the crop's side times this (about its centre): the predictor's first-crop search.

    Returns:
      A :class:`CropGeometry`.
    """
    check_protocol(protocol)
    if protocol == "face_square":
        matrix = face_square_matrix(box, out_size, box_scale * zoom)
        return CropGeometry(matrix, matrix, protocol)
    if not np.isfinite(np.asarray(box, np.float64)).all():
        raise ValueError(f"degenerate face box {tuple(box)!r}: need finite coordinates")
    if landmarks is not None:
        landmarks = np.asarray(landmarks, np.float64).reshape(-1, 2)
        landmarks = landmarks if len(landmarks) else None
    image, label, divisor = awing_matrices(box, out_size, landmarks)
    # Pixel-centre crop coordinates (the decoders' convention): continuous label - 0.5.
    labels = compose([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5]], label)
    return CropGeometry(_zoom(image, out_size, zoom), _zoom(labels, out_size, zoom), protocol,
                        divisor)



def crop_matrix(protocol: str, box, out_size: int, *, box_scale: float = 1.0,
                landmarks=None, zoom: float = 1.0) -> np.ndarray:
    """The 2x3 photo -> input image matrix (pixel centres, ``cv2.warpAffine``) of a crop
    ``protocol``; see :func:`crop_geometry` (whose ``matrix`` this is)."""
    return crop_geometry(protocol, box, out_size, box_scale=box_scale, landmarks=landmarks,
                         zoom=zoom).matrix


def reach_outside(matrix, out_size: int, shape) -> float:
    """How far the crop of the 2x3 ``matrix`` reaches past an image of ``shape`` (H, W, ...):
    the largest distance, in that image's pixels, from its outer pixel edges to a corner of the
    crop's outer pixel edges (0 when the crop lies inside)."""
    height, width = shape[:2]
    edge = out_size - 0.5
    corners = apply(invert(matrix), np.array([[-0.5, -0.5], [edge, -0.5], [-0.5, edge],
                                              [edge, edge]]))
    past = np.maximum(np.maximum(-0.5 - corners, corners - [width - 0.5, height - 0.5]), 0.0)
    return float(past.max())
