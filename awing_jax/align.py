"""Aligned faces: each face warped onto a canonical five-point template, the input of face
recognition.

    crops, matrices = align_faces(image, landmarks, "wflw", size=112)

The five points are the two eye centres, the nose tip and the two mouth corners (image-left
first), taken from each scheme's landmarks (:data:`FIVE_POINTS`). The warp is the similarity
(rotation, uniform scale, translation; no reflection or shear) that maps them onto
:data:`TEMPLATE_112` scaled to ``size`` with the least squared error. The template is the usual
one of face recognition (ArcFace's 112 x 112 crop).
"""

from __future__ import annotations

import numpy as np

from awing_jax import crop
from awing_jax.landmarks import get_scheme

# Left eye centre, right eye centre, nose tip, left and right mouth corner of a 112 x 112
# face-recognition crop (image left and right; pixel coordinates).
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]])

# Per scheme, the landmarks averaged into each of the five points (same order as the template).
FIVE_POINTS: dict[str, tuple[tuple[int, ...], ...]] = {
    "wflw": ((96,), (97,), (54,), (76,), (82,)),                  # pupils, nose tip, corners
    "300w": (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,)),
    "cofw": ((16,), (17,), (20,), (22,), (23,)),
    "aflw19": ((7,), (10,), (13,), (15,), (17,)),
}


def template(size: int) -> np.ndarray:
    """(5, 2) the template's points for a ``size`` x ``size`` crop."""
    return TEMPLATE_112 * (size / 112.0)


def five_points(landmarks, scheme) -> np.ndarray:
    """(..., 5, 2) eye centres, nose tip and mouth corners of (..., L, 2) landmarks."""
    name = get_scheme(scheme).name
    if name not in FIVE_POINTS:
        raise ValueError(f"scheme {name!r} defines no eye centres, nose tip and mouth corners "
                         f"for alignment (schemes that do: {', '.join(FIVE_POINTS)})")
    landmarks = np.asarray(landmarks, np.float64)
    return np.stack([landmarks[..., list(group), :].mean(axis=-2)
                     for group in FIVE_POINTS[name]], axis=-2)


def similarity(src, dst) -> np.ndarray:
    """The 2x3 similarity ``[[a, -b, tx], [b, a, ty]]`` minimising sum |M src_i - dst_i|^2.

    Closed form: linear least squares in (a, b, tx, ty) over the point pairs.
    """
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    if len(src) < 2 or len(src) != len(dst):
        raise ValueError(f"a similarity needs >= 2 point pairs, got {len(src)} and {len(dst)}")
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    rows = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, np.concatenate([dst[:, 0], dst[:, 1]]),
                                         rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def align_faces(image: np.ndarray, landmarks, scheme, size: int = 112
                ) -> tuple[np.ndarray, np.ndarray]:
    """Every face of ``image`` warped onto the template.

    Args:
      image: (H, W, C) photo.
      landmarks: (N, L, 2) photo pixels of N faces in ``scheme``.
      size: side of the aligned crops.

    Returns:
      ((N, size, size, C) crops, (N, 2, 3) photo -> crop similarities).
    """
    if size < 8:
        raise ValueError(f"aligned face size must be >= 8 px, got {size}")
    points = five_points(np.asarray(landmarks, np.float64).reshape(-1, get_scheme(scheme)
                                                                   .num_landmarks, 2), scheme)
    target = template(size)
    matrices = [similarity(p, target) for p in points]
    crops = [crop.warp(image, m, size) for m in matrices]
    shape = (0, size, size, *image.shape[2:])
    return (np.stack(crops) if crops else np.zeros(shape, image.dtype),
            np.stack(matrices) if matrices else np.zeros((0, 2, 3)))
