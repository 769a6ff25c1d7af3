"""Face-alignment metrics: normalised mean error, failure rate, CED and its AUC (docs/metrics.md).

Pure functions of arrays. :func:`nme` follows its inputs: NumPy in, NumPy (float64) out; JAX in,
JAX (float32) out, so it also runs inside a jitted or pmapped step. The list metrics
(:func:`failure_rate`, :func:`ced_curve`, :func:`auc`) take either and return NumPy / floats.
The normaliser of each dataset is looked up by name in the landmark scheme table
(:mod:`awing_jax.landmarks`); ``"box"`` is the face box size sqrt(w * h) used for AFLW.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from awing_jax.landmarks import LandmarkScheme, get_scheme


def _namespace(*arrays):
    """(jnp, float32) if any input is a JAX array or tracer, else (np, float64)."""
    if any(isinstance(a, jax.Array) for a in arrays):
        return jnp, jnp.float32
    return np, np.float64


def _check_concrete(bad, message: str) -> None:
    """Raises ``message`` naming the images where ``bad`` (B,) holds; skipped under tracing."""
    if isinstance(bad, jax.core.Tracer):
        return
    images = np.flatnonzero(np.asarray(bad)).tolist()
    if images:
        raise ValueError(f"{message} for images {images}")


def normalising_distance(gt, *, scheme, norm: str = "inter_ocular", boxes=None):
    """The per-image NME denominator d_norm.

    Args:
      gt: (B, L, 2) ground-truth landmarks.
      scheme: landmark scheme (name, number of points or :class:`LandmarkScheme`).
      norm: one of ``scheme.norm_names``: a name of ``scheme.normalisation`` (distance between
        the means of its two landmark groups in ``gt``) or ``"box"`` (sqrt(w * h) of ``boxes``).
      boxes: (B, 4) face boxes ``(x1, y1, x2, y2)``; required by ``norm="box"``.

    Returns:
      (B,) distances, NumPy float64 or JAX float32 like the inputs.
    """
    s: LandmarkScheme = get_scheme(scheme)
    xp, dtype = _namespace(gt, boxes)
    gt = xp.asarray(gt, dtype=dtype)
    if norm == "box":
        if boxes is None:
            raise ValueError('norm="box" needs the face boxes: pass boxes=(B, 4) x1, y1, x2, y2')
        boxes = xp.asarray(boxes, dtype=dtype)
        if boxes.shape != (gt.shape[0], 4):
            raise ValueError(f"boxes must have shape ({gt.shape[0]}, 4), got {boxes.shape}")
        # sqrt(w * h) of the face box, written for both array namespaces so that it traces.
        return xp.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    if norm not in s.normalisation:
        raise ValueError(f"unknown normaliser {norm!r} for scheme {s.name}; "
                         f"known: {list(s.norm_names)}")
    group_a, group_b = s.normalisation[norm]
    centre_a = gt[:, list(group_a)].mean(axis=1)
    centre_b = gt[:, list(group_b)].mean(axis=1)
    return xp.linalg.norm(centre_a - centre_b, axis=-1)


def nme(pred, gt, *, scheme, norm: str = "inter_ocular", boxes=None, visible=None):
    """Per-image normalised mean error: mean_l ||pred_l - gt_l||_2 / d_norm.

    Args:
      pred, gt: (B, L, 2) predicted and ground-truth landmarks, in the same pixel frame.
      scheme: landmark scheme (name, number of points or :class:`LandmarkScheme`).
      norm: normaliser name, see :func:`normalising_distance`.
      boxes: (B, 4) face boxes, required by ``norm="box"``.
      visible: optional (B, L) mask; the mean then runs over the visible landmarks only.

    Returns:
      (B,) NME of each image (a fraction, not a percentage): NumPy float64 for NumPy inputs, JAX
      float32 if any input is a JAX array. A zero normaliser or an image without visible points
      raises on concrete inputs; under jit it gives inf or nan instead.
    """
    s = get_scheme(scheme)
    xp, dtype = _namespace(pred, gt, boxes, visible)
    pred = xp.asarray(pred, dtype=dtype)
    gt = xp.asarray(gt, dtype=dtype)
    expected = (len(gt) if gt.ndim else 0, s.num_landmarks, 2)
    if gt.shape != expected or pred.shape != expected:
        raise ValueError(f"pred and gt must both be (B, {s.num_landmarks}, 2) for {s.name}, "
                         f"got {pred.shape} and {gt.shape}")
    d_norm = normalising_distance(gt, scheme=s, norm=norm, boxes=boxes)
    _check_concrete(~(d_norm > 0), f"normalising distance {norm!r} is zero or invalid")
    errors = xp.linalg.norm(pred - gt, axis=-1)  # (B, L)
    if visible is None:
        mean_error = errors.mean(axis=1)
    else:
        visible = xp.asarray(visible, dtype=bool)
        if visible.shape != errors.shape:
            raise ValueError(f"visible must have shape {errors.shape}, got {visible.shape}")
        counts = visible.sum(axis=1)
        _check_concrete(counts == 0, "no visible landmark")
        mean_error = xp.where(visible, errors, 0.0).sum(axis=1) / counts
    return mean_error / d_norm


def _as_nmes(nmes) -> np.ndarray:
    nmes = np.asarray(nmes, dtype=np.float64).reshape(-1)
    if nmes.size == 0:
        raise ValueError("no NME values given")
    return nmes


def failure_rate(nmes, threshold: float = 0.1) -> float:
    """FR@threshold: the share of images whose NME exceeds ``threshold``."""
    return float(np.mean(_as_nmes(nmes) > threshold))


def ced_curve(nmes, threshold: float, step: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution on ``[0, threshold]``.

    Returns:
      ``(thresholds, fraction)``: a grid from 0 to ``threshold`` inclusive with spacing ``step``
      (adjusted so the grid ends exactly at ``threshold``) and the share of images with
      NME <= each grid value.
    """
    nmes = np.sort(_as_nmes(nmes))
    if not (threshold > 0 and step > 0):
        raise ValueError(f"threshold and step must be positive, got {threshold}, {step}")
    thresholds = np.linspace(0.0, threshold, round(threshold / step) + 1)
    fraction = np.searchsorted(nmes, thresholds, side="right") / nmes.size
    return thresholds, fraction


def auc(nmes, threshold: float = 0.1, step: float = 1e-4) -> float:
    """AUC@threshold: area under the CED on ``[0, threshold]`` (trapezoid) / ``threshold``."""
    thresholds, fraction = ced_curve(nmes, threshold, step)
    return float(np.trapezoid(fraction, thresholds) / threshold)
