"""Pose-based data balancing (PDB; Wing paper, Feng et al., CVPR 2018, and the ``pdb.m`` of
its reference code).

Faces in large out-of-plane rotation are rare in training sets. PDB measures each training shape's
pose without labels: all shapes are aligned to their mean by generalised Procrustes analysis
(similarity transforms, no reflection), which removes position, in-plane rotation and scale, and the
projection of an aligned shape onto the first principal component of the aligned set is then
dominated by yaw (for AFLW's 19 points, which have no face contour, the second component). The
projections are histogrammed into K bins and each sample is replicated
``round(max bin count / its bin count)`` times, so every pose bin holds about as many samples as
the fullest one; augmentation makes the copies differ.

All functions are NumPy on (N, L, 2) shapes and take an optional (N, L) ``visible`` mask: missing
points take no part in alignment, mean shape or principal components. See docs/training.md.
"""

from __future__ import annotations

import numpy as np

DEFAULT_NUM_BINS = 9


def default_component(scheme: str) -> int:
    """The principal component that tracks yaw: the second for 19-point AFLW (no face contour),
    the first otherwise (``pdb.m``)."""
    return 1 if scheme == "aflw19" else 0


def _weights(visible, shape: tuple[int, ...]) -> np.ndarray:
    if visible is None:
        return np.ones(shape[:-1])
    visible = np.asarray(visible, np.float64)
    if visible.shape != shape[:-1]:
        raise ValueError(f"visible {visible.shape} does not match shapes {shape}")
    return visible


def similarity_align(shape, reference, visible=None):
    """The least-squares similarity (no reflection) taking ``shape`` onto ``reference``.

    With both centred on their (visible-weighted) centroids, a = shape, b = reference, the
    optimal rotation in 2-D has the closed form ``theta = atan2(sum a x b, sum a . b)`` (cross and
    dot products of corresponding points), the scale is
    ``sqrt((sum a . b)^2 + (sum a x b)^2) / sum |a|^2`` and the translation maps the centroids.

    Args:
      shape, reference: (..., L, 2) point sets in correspondence.
      visible: optional (..., L) mask; only visible points are fitted.

    Returns:
      ``(aligned, scale, theta, translation)``: ``aligned = scale * R(theta) @ shape + translation``
      (..., L, 2) for all points, scale and theta (...,), translation (..., 2).
    """
    a = np.asarray(shape, np.float64)
    b = np.broadcast_to(np.asarray(reference, np.float64), a.shape)
    w = _weights(visible, a.shape)[..., None]
    count = np.maximum(np.sum(w, axis=-2, keepdims=True), 1e-12)
    ca = np.sum(w * a, axis=-2, keepdims=True) / count
    cb = np.sum(w * b, axis=-2, keepdims=True) / count
    a0, b0 = a - ca, b - cb
    dot = np.sum(w[..., 0] * (a0[..., 0] * b0[..., 0] + a0[..., 1] * b0[..., 1]), axis=-1)
    cross = np.sum(w[..., 0] * (a0[..., 0] * b0[..., 1] - a0[..., 1] * b0[..., 0]), axis=-1)
    norm = np.sum(w[..., 0] * np.sum(a0**2, axis=-1), axis=-1)
    theta = np.arctan2(cross, dot)
    scale = np.hypot(dot, cross) / np.maximum(norm, 1e-300)
    cos, sin = (scale * np.cos(theta))[..., None], (scale * np.sin(theta))[..., None]
    rotated = np.stack([cos * a[..., 0] - sin * a[..., 1], sin * a[..., 0] + cos * a[..., 1]],
                       axis=-1)
    translation = (cb - np.stack([cos * ca[..., 0] - sin * ca[..., 1],
                                  sin * ca[..., 0] + cos * ca[..., 1]], axis=-1))[..., 0, :]
    return rotated + translation[..., None, :], scale, theta, translation


def _normalised(mean: np.ndarray) -> np.ndarray:
    """Centred, unit Frobenius norm: fixes the gauge of the mean shape (else it could shrink)."""
    mean = mean - mean.mean(axis=0)
    return mean / np.linalg.norm(mean)


def _masked_mean(aligned: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.sum(w[..., None] * aligned, axis=0) / np.maximum(w.sum(axis=0), 1e-12)[:, None]


def generalised_procrustes(shapes, visible=None, *, max_iterations: int = 100,
                           tolerance: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Iterated generalised Procrustes analysis: aligns every shape to the common mean shape.

    Starts from the shape with the most visible points as the reference (each shape aligned on
    the points both have); then repeats: the mean of the aligned shapes (per landmark, over the
    shapes where it is visible), normalised (centred, unit norm), becomes the reference, until it
    moves less than ``tolerance``.

    Args:
      shapes: (N, L, 2).
      visible: optional (N, L) mask; every landmark must be visible in at least one shape.

    Returns:
      ``(aligned (N, L, 2), mean (L, 2))``, the mean centred with unit Frobenius norm.
    """
    shapes = np.asarray(shapes, np.float64)
    w = _weights(visible, shapes.shape)
    if np.any(w.sum(axis=0) == 0):
        raise ValueError("every landmark must be visible in at least one shape")
    if np.any(w.sum(axis=1) < 2):
        raise ValueError("every shape needs at least two visible landmarks")
    first = np.argmax(w.sum(axis=1))
    reference, common = shapes[first], w * w[first]
    mean = None
    for _ in range(max_iterations):
        aligned = similarity_align(shapes, reference, common)[0]
        new_mean = _normalised(_masked_mean(aligned, w))
        converged = mean is not None and np.linalg.norm(new_mean - mean) < tolerance
        mean = reference = new_mean
        common = w
        if converged:
            break
    return similarity_align(shapes, mean, w)[0], mean


def principal_projections(shapes, visible=None, *, component: int = 0) -> np.ndarray:
    """Projection (N,) of each Procrustes-aligned shape on a principal component of the set.

    Missing points are filled with the mean shape's, so they add nothing to the deviations.
    The sign of a principal component is arbitrary; balancing does not depend on it.
    """
    aligned, mean = generalised_procrustes(shapes, visible)
    w = _weights(visible, aligned.shape)
    deviations = np.where(w[..., None] > 0, aligned - mean, 0.0).reshape(len(aligned), -1)
    deviations = deviations - deviations.mean(axis=0)
    if not 0 <= component < min(deviations.shape):
        raise ValueError(f"component {component} out of range for {deviations.shape} data")
    _, _, components = np.linalg.svd(deviations, full_matrices=False)
    return deviations @ components[component]


def replication_factors(values, *, num_bins: int = DEFAULT_NUM_BINS) -> np.ndarray:
    """Histogram ``values`` (N,) into ``num_bins`` equal-width bins over their range and give each
    sample ``round(max bin count / its bin count)`` (halves rounded up, as MATLAB's ``round``).

    Returns:
      (N,) int64, at least 1.
    """
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"expected a non-empty (N,) array, got shape {values.shape}")
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    low, high = values.min(), values.max()
    span = high - low if high > low else 1.0
    bins = np.minimum(((values - low) / span * num_bins).astype(np.int64), num_bins - 1)
    counts = np.bincount(bins, minlength=num_bins)
    return np.floor(counts.max() / counts[bins] + 0.5).astype(np.int64)


def pdb_weights(landmarks, visible=None, *, num_bins: int = DEFAULT_NUM_BINS,
                component: int = 0) -> np.ndarray:
    """Pose-based data balancing: replication counts (N,) for training shapes (N, L, 2).

    Procrustes alignment to the mean shape, PCA, projection on principal component ``component``
    (0: first; :func:`default_component` gives the scheme's), a ``num_bins`` histogram of the
    projections and ``round(max bin count / bin count)`` copies of each sample; to be used as the
    ``sample_weights`` of :func:`awing_jax.input_pipeline.train_iterator`.
    """
    return replication_factors(principal_projections(landmarks, visible, component=component),
                               num_bins=num_bins)
