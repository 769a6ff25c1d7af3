"""Heatmaps -> landmark coordinates (AWing reference decoder and a sub-pixel estimator).

Coordinates are ``(x, y)`` input pixels with integer values at pixel centres; heatmap coordinate
``u`` maps to ``stride*(u + 0.5) - 0.5`` (see :mod:`awing_jax.targets`). How both decoders
relate to the authors' code: docs/conventions.md.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from awing_jax.targets import to_input_coords

# Heatmap values at or below this are treated as 0 (no logarithm).
_MIN_VALUE = 1e-10
# Log-heatmap curvature must be below -_MIN_CURVATURE (a Gaussian of sigma <= 100 px qualifies).
_MIN_CURVATURE = 1e-4
# Largest sub-pixel step away from the argmax, in heatmap pixels.
_MAX_STEP = 1.0


def _patches(maps, x0, y0):
    """3x3 neighbourhoods of (B, L, H, W) maps, kept inside the map.

    The patch centre ``(cx, cy)`` is the argmax ``(x0, y0)`` moved inward to 1..W-2 (1..H-2), so a
    patch always exists; returns (patch (B, L, 3, 3) indexed [row, col], cx, cy).
    """
    batch, num, height, width = maps.shape
    cx = jnp.clip(x0, 1, width - 2)
    cy = jnp.clip(y0, 1, height - 2)
    offsets = jnp.arange(-1, 2)
    rows = cy[..., None] + offsets
    cols = cx[..., None] + offsets
    index = (rows[..., :, None] * width + cols[..., None, :]).reshape(batch, num, 9)
    patch = jnp.take_along_axis(maps.reshape(batch, num, -1), index, axis=-1)
    return patch.reshape(batch, num, 3, 3), cx, cy


def _reference_offsets(patch, x0, y0, height, width):
    """The authors' quarter-pixel rule (docs/conventions.md).

    When the argmax is off the border in both axes it moves 0.25 px toward the larger of its two
    neighbours along x and along y (no move on a tie); on the border it stays.
    """
    interior = (x0 > 0) & (x0 < width - 1) & (y0 > 0) & (y0 < height - 1)
    step_x = 0.25 * jnp.sign(patch[..., 1, 2] - patch[..., 1, 0])
    step_y = 0.25 * jnp.sign(patch[..., 2, 1] - patch[..., 0, 1])
    return jnp.where(interior, step_x, 0.0), jnp.where(interior, step_y, 0.0)


def _parabola_vertex(left, centre, right):
    """Offset of the vertex of the parabola through (-1, left), (0, centre), (1, right).

    Returns (offset, valid); ``valid`` is False unless the parabola opens downward, and then the
    offset is 0 with a finite gradient.
    """
    curvature = left - 2.0 * centre + right
    valid = curvature < -_MIN_CURVATURE
    safe = jnp.where(valid, curvature, -1.0)
    return jnp.where(valid, -0.5 * (right - left) / safe, 0.0), valid


def _subpixel_offsets(patch, x0, y0, cx, cy):
    """Newton step on the log-heatmap from the patch centre; offsets from the argmax.

    ``log h`` is expanded to second order around ``(cx, cy)`` with central finite differences
    (gradient g, Hessian H) and the maximum of that quadratic, ``(cx, cy) - H^-1 g``, is taken
    (the DARK estimator). For a Gaussian ``log h`` is quadratic, so the step is exact whatever
    the covariance. If a patch value is <= 0 or H is not negative definite, each axis falls back to
    the vertex of the parabola through the log-values along the argmax's row (column), and if that
    also fails (non-positive values, flat or convex profile) to the argmax itself. The result is
    clipped to ±1 px around the argmax.
    """
    positive = patch > _MIN_VALUE
    log = jnp.log(jnp.where(positive, patch, 1.0))
    gx = 0.5 * (log[..., 1, 2] - log[..., 1, 0])
    gy = 0.5 * (log[..., 2, 1] - log[..., 0, 1])
    hxx = log[..., 1, 2] - 2.0 * log[..., 1, 1] + log[..., 1, 0]
    hyy = log[..., 2, 1] - 2.0 * log[..., 1, 1] + log[..., 0, 1]
    hxy = 0.25 * (log[..., 2, 2] - log[..., 2, 0] - log[..., 0, 2] + log[..., 0, 0])
    det = hxx * hyy - hxy**2
    newton = (jnp.all(positive, axis=(-2, -1)) & (hxx < -_MIN_CURVATURE)
              & (hyy < -_MIN_CURVATURE) & (det > _MIN_CURVATURE**2))
    safe_det = jnp.where(newton, det, 1.0)
    newton_x = cx - (hyy * gx - hxy * gy) / safe_det
    newton_y = cy - (hxx * gy - hxy * gx) / safe_det

    # 1-D fallbacks through the argmax: its row for x, its column for y (patch-local indices).
    row = (y0 - cy + 1)[..., None, None]
    col = (x0 - cx + 1)[..., None, None]
    row_log = jnp.take_along_axis(log, row, axis=-2)[..., 0, :]
    row_ok = jnp.all(jnp.take_along_axis(positive, row, axis=-2), axis=(-2, -1))
    col_log = jnp.take_along_axis(log, col, axis=-1)[..., :, 0]
    col_ok = jnp.all(jnp.take_along_axis(positive, col, axis=-1), axis=(-2, -1))
    vertex_x, fit_x = _parabola_vertex(row_log[..., 0], row_log[..., 1], row_log[..., 2])
    vertex_y, fit_y = _parabola_vertex(col_log[..., 0], col_log[..., 1], col_log[..., 2])
    line_x = jnp.where(fit_x & row_ok, cx + vertex_x, x0)
    line_y = jnp.where(fit_y & col_ok, cy + vertex_y, y0)

    x = jnp.where(newton, newton_x, line_x)
    y = jnp.where(newton, newton_y, line_y)
    return (jnp.clip(x - x0, -_MAX_STEP, _MAX_STEP), jnp.clip(y - y0, -_MAX_STEP, _MAX_STEP))


@functools.partial(jax.jit, static_argnames=("stride", "mode", "return_scores"))
def decode_heatmaps(heatmaps, *, stride: int = 4, mode: str = "subpixel",
                    return_scores: bool = False):
    """Landmark coordinates from landmark heatmaps (boundary channel already dropped).

    Args:
      heatmaps: (B, H, W, L), H, W >= 3.
      stride: input pixels per heatmap pixel.
      mode: ``"reference"``: argmax ``(x0, y0)``, plus 0.25 px toward the larger neighbour in x and
        in y when the argmax is not on the border (ties: no step), i.e.
        ``x = stride*(x0 + 0.5 ± 0.25) - 0.5``, as the authors' evaluation code.
        ``"subpixel"``: argmax refined by one Newton step on the log-heatmap with a
        finite-difference Hessian (exact for a Gaussian peak), see :func:`_subpixel_offsets`.
      return_scores: also return each landmark's heatmap maximum.

    Returns:
      (B, L, 2) float32 ``(x, y)`` input pixels; with ``return_scores`` also the (B, L) peak values.
      Jittable; no NaN values or gradients for any finite input.
    """
    heatmaps = jnp.asarray(heatmaps, jnp.float32)
    batch, height, width, num = heatmaps.shape
    maps = jnp.moveaxis(heatmaps, -1, 1)  # (B, L, H, W)
    flat = jnp.argmax(maps.reshape(batch, num, -1), axis=-1)  # (B, L)
    scores = jnp.take_along_axis(maps.reshape(batch, num, -1), flat[..., None], axis=-1)[..., 0]
    x0, y0 = flat % width, flat // width
    patch, cx, cy = _patches(maps, x0, y0)
    if mode == "reference":
        dx, dy = _reference_offsets(patch, x0, y0, height, width)
    elif mode == "subpixel":
        dx, dy = _subpixel_offsets(patch, x0, y0, cx, cy)
    else:
        raise ValueError(f"unknown decoding mode {mode!r}; expected 'subpixel' or 'reference'")
    coords = to_input_coords(jnp.stack([x0 + dx, y0 + dy], axis=-1), stride)
    return (coords, scores) if return_scores else coords
