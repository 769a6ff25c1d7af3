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


PROTOCOLS = ("face_square",)


def crop_matrix(protocol: str, box, out_size: int, *, box_scale: float,
                landmarks=None) -> np.ndarray:
    """The 2x3 photo -> crop matrix (pixel centres, ``cv2.warpAffine``) of a crop ``protocol``.

    ``"face_square"``: the face square of ``box`` at ``box_scale`` (:func:`face_square_matrix`);
    it does not use ``landmarks``.
    """
    if protocol != "face_square":
        raise ValueError(f"unknown crop protocol {protocol!r}: expected one of {PROTOCOLS}")
    del landmarks
    return face_square_matrix(box, out_size, box_scale)
