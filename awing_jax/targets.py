"""Training targets: landmark heatmaps and the facial boundary heatmap (AWing paper, Sec. 4).

Pure JAX, jittable and vectorised, so that the train step can render its targets on the
accelerator from a batch of landmarks.

Coordinates follow :mod:`awing_jax.landmarks`: ``(x, y)`` input pixels with integer values at pixel
centres. With stride ``s`` heatmap pixel ``j`` covers input pixels ``[s*j - 0.5, s*j + s - 0.5)``,
so its centre is input pixel ``s*j + (s - 1)/2`` and an input coordinate ``x`` sits at heatmap
coordinate ``u = (x + 0.5)/s - 0.5`` (the ``x/4 - 0.5`` of pixel-edge coordinates).
Heatmaps are NHWC: ``heatmap[b, y, x, l]``. Explained in docs/heatmaps.md and docs/conventions.md.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from awing_jax.landmarks import LandmarkScheme, get_scheme

# The support of every truncated Gaussian, in standard deviations (paper, Sec. 4.3).
TRUNCATION = 3.0

# Points per spline interval when a boundary curve is sampled into a polyline. With landmarks a few
# heatmap pixels apart the chord-to-arc gap of 1/8 of an interval is well under 0.05 px.
SAMPLES_PER_INTERVAL = 8

# Floor on a chord length, as a share of the group's mean chord, so coincident landmarks keep the
# spline parameter strictly increasing.
_MIN_CHORD_SHARE = 1e-3


def to_heatmap_coords(points, stride: int = 4):
    """Input-pixel coordinates -> heatmap coordinates: ``u = (x + 0.5)/stride - 0.5``."""
    return (points + 0.5) / stride - 0.5


def to_input_coords(points, stride: int = 4):
    """Heatmap coordinates -> input-pixel coordinates: ``x = stride*(u + 0.5) - 0.5``."""
    return stride * (points + 0.5) - 0.5


def _truncated_gaussian(squared_distance, sigma: float):
    """``exp(-d^2 / 2 sigma^2)``, exactly 0 where ``d >= 3 sigma``."""
    inside = squared_distance < (TRUNCATION * sigma) ** 2
    return jnp.where(inside, jnp.exp(-squared_distance / (2.0 * sigma**2)), 0.0)


def reference_sigma(sigma: float = 1.0) -> float:
    """The Gaussian's true standard deviation in the reference rendering, in heatmap pixels.

    The reference code (inherited from FAN) draws a kernel of ``6*sigma + 1`` pixels whose standard
    deviation is a quarter of its width, so the nominal ``sigma = 1`` is really 1.75.
    """
    return (6.0 * sigma + 1.0) / 4.0


@functools.partial(jax.jit, static_argnames=("heatmap_size", "stride", "sigma", "mode"))
def render_heatmaps(landmarks, visible, *, heatmap_size: int, stride: int = 4,
                    sigma: float = 1.0, mode: str = "subpixel"):
    """One Gaussian heatmap per landmark.

    Args:
      landmarks: (B, L, 2) ``(x, y)`` in input pixels.
      visible: (B, L) bool or 0/1; an invisible landmark gets an all-zero channel.
      heatmap_size: H = W of the heatmap.
      stride: input pixels per heatmap pixel.
      sigma: Gaussian standard deviation in heatmap pixels (nominal value in reference mode).
      mode: ``"subpixel"``: ``exp(-r^2 / 2 sigma^2)`` centred on the exact heatmap coordinate
        ``(x + 0.5)/stride - 0.5``, exactly 0 where ``r >= 3 sigma``.
        ``"reference"``: the authors' rendering: peak 1.0 on the integer pixel
        ``floor((x + 0.5)/stride)``, standard deviation :func:`reference_sigma` (1.75 for
        sigma = 1), zero outside the ``(6 sigma + 1)``-pixel square window around the peak,
        clipped at the map border.

    Returns:
      (B, H, W, L) float32 in [0, 1].
    """
    landmarks = jnp.asarray(landmarks, jnp.float32)
    grid = jnp.arange(heatmap_size, dtype=jnp.float32)
    if mode == "subpixel":
        centre = to_heatmap_coords(landmarks, stride)
    elif mode == "reference":
        centre = jnp.floor((landmarks + 0.5) / stride)
    else:
        raise ValueError(f"unknown heatmap mode {mode!r}; expected 'subpixel' or 'reference'")
    dx = grid[None, :, None] - centre[:, None, :, 0]  # (B, W, L)
    dy = grid[None, :, None] - centre[:, None, :, 1]  # (B, H, L)
    squared_distance = dx[:, None, :, :] ** 2 + dy[:, :, None, :] ** 2
    if mode == "subpixel":
        heat = _truncated_gaussian(squared_distance, sigma)
    else:
        half = TRUNCATION * sigma
        window = (jnp.abs(dx) <= half)[:, None, :, :] & (jnp.abs(dy) <= half)[:, :, None, :]
        heat = jnp.where(window, jnp.exp(-squared_distance / (2.0 * reference_sigma(sigma) ** 2)),
                         0.0)
    visible = jnp.asarray(visible).astype(bool)
    return jnp.where(visible[:, None, None, :], heat, 0.0)


def _spline_slopes(points, h, sizes: tuple[int, ...]):
    """Derivatives dP/dt at the knots of the interpolating curves of a padded batch of groups.

    Group ``g`` is the first ``sizes[g]`` points of ``points[..., g, :, :]``; its curve has degree
    min(n - 1, 3): the parabola through 3 points, the not-a-knot cubic spline through 4 or more
    (the cubic through 4), the same curve as ``scipy.interpolate.CubicSpline(bc_type="not-a-knot")``
    or ``splprep(k=min(n - 1, 3), s=0)``. The slopes solve one tridiagonal system per group (the
    not-a-knot end rows reduced to two unknowns), all groups in one call; the rows past a group's
    last point are the identity, so its padding has slope 0 and does not touch its curve.

    Args:
      points: (..., G, N, 2), N = max(sizes); rows past a group's size are ignored.
      h: (..., G, N - 1) positive parameter steps between consecutive points (any positive value
        past a group's last interval).
      sizes: G static point counts, each 3 <= n <= N.

    Returns:
      (..., G, N, 2).
    """
    num = points.shape[-2]
    n = np.asarray(sizes)[:, None]  # (G, 1)
    i = np.arange(num)[None, :]  # (1, N)
    pad = i >= n
    first, last, cubic = i == 0, i == n - 1, n >= 4
    delta = jnp.diff(points, axis=-2) / h[..., None]  # (..., G, N-1, 2)
    one, zero = jnp.ones_like(h[..., :1]), jnp.zeros_like(delta[..., :1, :])
    # Row i sees the steps and secant slopes on its left (l) and right (r); hl2 / dl2 the ones
    # two intervals to its left, hr2 / dr2 two to its right (dummies at the ends, never selected).
    hl, hr = jnp.concatenate([one, h], -1), jnp.concatenate([h, one], -1)
    hl2 = jnp.concatenate([one, one, h[..., :-1]], -1)
    hr2 = jnp.concatenate([h[..., 1:], one, one], -1)
    dl, dr = jnp.concatenate([zero, delta], -2), jnp.concatenate([delta, zero], -2)
    dl2 = jnp.concatenate([zero, zero, delta[..., :-1, :]], -2)
    dr2 = jnp.concatenate([delta[..., 1:, :], zero, zero], -2)
    # Continuous second derivative at an interior knot.
    lower, diag, upper = hr, 2.0 * (hl + hr), hl
    rhs = 3.0 * (hr[..., None] * dl + hl[..., None] * dr)
    # Not-a-knot at the second knot (first row) and at the last but one (last row): the third
    # derivative's jump, with the neighbouring interior row subtracted to leave two unknowns.
    sum_r, sum_l = hr + hr2, hl + hl2
    first_rhs = (dr * (hr2 * (2.0 * hr2 + 3.0 * hr))[..., None]
                 + dr2 * (hr**2)[..., None]) / sum_r[..., None]
    last_rhs = (dl * (hl2 * (2.0 * hl2 + 3.0 * hl))[..., None]
                + dl2 * (hl**2)[..., None]) / sum_l[..., None]
    # The parabola: its mean slope over an interval is the secant slope.
    lower = jnp.where(first, 0.0, jnp.where(last, jnp.where(cubic, sum_l, 1.0), lower))
    diag = jnp.where(first, jnp.where(cubic, hr2, 1.0),
                     jnp.where(last, jnp.where(cubic, hl2, 1.0), diag))
    upper = jnp.where(first, jnp.where(cubic, sum_r, 1.0), jnp.where(last, 0.0, upper))
    rhs = jnp.where(first[..., None], jnp.where(cubic[..., None], first_rhs, 2.0 * dr),
                    jnp.where(last[..., None], jnp.where(cubic[..., None], last_rhs, 2.0 * dl),
                              rhs))
    lower, diag, upper = (jnp.where(pad, 0.0, lower), jnp.where(pad, 1.0, diag),
                          jnp.where(pad, 0.0, upper))
    rhs = jnp.where(pad[..., None], 0.0, rhs)
    return jax.lax.linalg.tridiagonal_solve(lower, diag, upper, rhs)


def _sample_curves(points, sizes: tuple[int, ...], samples_per_interval: int):
    """The interpolating curves of a padded batch of groups, sampled into polylines.

    Args:
      points: (..., G, N, 2), N = max(sizes); group ``g`` is its first ``sizes[g]`` points, and
        every row after them repeats its last point.
      sizes: G static point counts, each >= 3.
      samples_per_interval: polyline vertices per interval between consecutive points.

    Returns:
      (..., G, (N - 1) * samples_per_interval + 1, 2): group ``g``'s polyline is its first
      ``(sizes[g] - 1) * samples_per_interval + 1`` vertices (the next one, if any, repeats its
      last point).
    """
    n = np.asarray(sizes)[:, None]  # (G, 1)
    real = np.arange(points.shape[-2] - 1)[None, :] < n - 1  # (G, N-1) intervals of the curve
    chord = jnp.where(real, jnp.linalg.norm(jnp.diff(points, axis=-2), axis=-1), 0.0)
    total = jnp.sum(chord, axis=-1, keepdims=True)
    chord = jnp.where(real, jnp.maximum(chord, _MIN_CHORD_SHARE * total / (n - 1) + 1e-6), 0.0)
    h = chord / jnp.sum(chord, axis=-1, keepdims=True)  # unit length: a well-scaled system
    h = jnp.where(real, h, 1.0)  # any positive step past the last point
    slopes = _spline_slopes(points, h, sizes)
    # Cubic Hermite form on each interval, exact for the spline and for the parabola.
    s = (np.arange(samples_per_interval, dtype=np.float32) / samples_per_interval)[:, None]
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s  # (K, 1)
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    step = h[..., :, None, None]  # (..., G, N-1, 1, 1)
    start, end = points[..., :-1, None, :], points[..., 1:, None, :]
    m0, m1 = slopes[..., :-1, None, :], slopes[..., 1:, None, :]
    samples = h00 * start + h10 * step * m0 + h01 * end + h11 * step * m1  # (..., G, N-1, K, 2)
    samples = samples.reshape(*samples.shape[:-3], -1, 2)
    return jnp.concatenate([samples, points[..., -1:, :]], axis=-2)


@functools.partial(jax.jit, static_argnames=("samples_per_interval",))
def interpolating_curve(points, samples_per_interval: int = SAMPLES_PER_INTERVAL):
    """Samples the interpolating curve through ``points`` into a polyline.

    The curve is parameterised by chord length (the cumulative distance between consecutive
    points) and has degree min(n - 1, 3): the segment for 2 points, the parabola for 3, the
    not-a-knot cubic spline for 4 or more. Each interval between consecutive landmarks is sampled at
    ``samples_per_interval`` equal parameter steps (a fixed count, so shapes are static).

    Args:
      points: (..., n, 2) landmarks of one facial curve, n >= 1.
      samples_per_interval: polyline vertices per interval between landmarks.

    Returns:
      (..., P, 2) polyline vertices through every landmark, P = 2 for n <= 2, else
      ``(n - 1) * samples_per_interval + 1``.
    """
    n = points.shape[-2]
    if n == 1:
        return jnp.concatenate([points, points], axis=-2)
    if n == 2:
        return points
    return _sample_curves(points[..., None, :, :], (n,), samples_per_interval)[..., 0, :, :]


def _boundary_segments(landmarks, groups: tuple[tuple[int, ...], ...], samples_per_interval: int):
    """Every curve of ``groups`` sampled into one tensor of line segments (no padding).

    The curves of 3 or more points are interpolated together, padded to the longest one; the
    group list is static, so the padding is dropped by a fixed gather. A group of 1 or 2 points
    is its segment. Returns (starts, ends), each (B, S, 2).
    """
    batch = landmarks.shape[0]
    curves = [g for g in groups if len(g) >= 3]
    short = [g for g in groups if len(g) <= 2]
    starts, ends = [], []
    if curves:
        sizes = tuple(len(g) for g in curves)
        longest = max(sizes)
        index = np.array([[g[min(i, len(g) - 1)] for i in range(longest)] for g in curves])
        vertices = _sample_curves(landmarks[:, index, :], sizes, samples_per_interval)
        per_group = vertices.shape[-2] - 1  # segments of a group, padding included
        keep = np.concatenate([g * per_group + np.arange((n - 1) * samples_per_interval)
                               for g, n in enumerate(sizes)])
        starts.append(vertices[:, :, :-1, :].reshape(batch, -1, 2)[:, keep])
        ends.append(vertices[:, :, 1:, :].reshape(batch, -1, 2)[:, keep])
    if short:
        starts.append(landmarks[:, np.array([g[0] for g in short]), :])
        ends.append(landmarks[:, np.array([g[-1] for g in short]), :])
    return jnp.concatenate(starts, axis=1), jnp.concatenate(ends, axis=1)


@functools.partial(jax.jit, static_argnames=("groups", "heatmap_size", "stride", "sigma",
                                             "samples_per_interval"))
def _boundary_heatmap(landmarks, groups, *, heatmap_size, stride, sigma, samples_per_interval):
    landmarks = to_heatmap_coords(jnp.asarray(landmarks, jnp.float32), stride)
    start, end = _boundary_segments(landmarks, groups, samples_per_interval)
    edge = end - start
    length2 = jnp.sum(edge**2, axis=-1)
    inv_length2 = jnp.where(length2 > 0, 1.0 / jnp.where(length2 > 0, length2, 1.0), 0.0)
    grid = jnp.arange(heatmap_size, dtype=jnp.float32)
    wx = grid[None, None, :, None] - start[:, None, None, :, 0]  # (B, 1, W, S)
    wy = grid[None, :, None, None] - start[:, None, None, :, 1]  # (B, H, 1, S)
    ex, ey = edge[:, None, None, :, 0], edge[:, None, None, :, 1]
    # Projection of the pixel centre onto the segment, clamped to its end points.
    t = jnp.clip((wx * ex + wy * ey) * inv_length2[:, None, None, :], 0.0, 1.0)
    squared_distance = jnp.min((wx - t * ex) ** 2 + (wy - t * ey) ** 2, axis=-1)
    return _truncated_gaussian(squared_distance, sigma)[..., None]


def render_boundary_heatmap(landmarks, scheme: str | int | LandmarkScheme, *, heatmap_size: int,
                            stride: int = 4, sigma: float = 1.0,
                            samples_per_interval: int = SAMPLES_PER_INTERVAL):
    """The facial boundary heatmap: all curves of ``scheme`` in one channel (paper, Sec. 4.3).

    Each boundary group is interpolated by :func:`interpolating_curve` and sampled into a polyline;
    ``d`` is the exact distance from a heatmap pixel centre to the nearest polyline segment of any
    curve, in heatmap pixels, and the map is ``exp(-d^2 / 2 sigma^2)``, 0 where ``d >= 3 sigma``.

    Args:
      landmarks: (B, L, 2) ``(x, y)`` in input pixels.
      scheme: landmark scheme (its ``boundary_groups``), name or number of points.
      heatmap_size: H = W.
      stride: input pixels per heatmap pixel.
      sigma: standard deviation in heatmap pixels.
      samples_per_interval: polyline vertices per interval between consecutive landmarks.

    Returns:
      (B, H, W, 1) float32 in [0, 1].
    """
    scheme = get_scheme(scheme)
    if landmarks.shape[-2] != scheme.num_landmarks:
        raise ValueError(f"expected {scheme.num_landmarks} landmarks for {scheme.name}, "
                         f"got shape {landmarks.shape}")
    return _boundary_heatmap(landmarks, scheme.boundary_groups, heatmap_size=heatmap_size,
                             stride=stride, sigma=sigma, samples_per_interval=samples_per_interval)


def render_targets(landmarks, visible, scheme: str | int | LandmarkScheme | None, *,
                   heatmap_size: int, stride: int = 4, sigma: float = 1.0,
                   boundary_sigma: float = 1.0, mode: str = "subpixel", boundary: bool = True):
    """The train step's target: landmark heatmaps, then the boundary channel, and a channel mask.

    Args:
      landmarks: (B, L, 2) ``(x, y)`` in input pixels.
      visible: (B, L) bool or 0/1.
      scheme: landmark scheme for the boundary curves (unused, may be None, if not ``boundary``).
      heatmap_size, stride, sigma, mode: as in :func:`render_heatmaps`.
      boundary_sigma: sigma of :func:`render_boundary_heatmap`.
      boundary: append the boundary channel.

    Returns:
      (heatmaps, mask): (B, H, W, L + 1) and (B, L + 1) float32 (L without ``boundary``); the mask
      is 1 for visible landmarks and for the boundary channel, 0 for invisible landmarks.
    """
    heatmaps = render_heatmaps(landmarks, visible, heatmap_size=heatmap_size, stride=stride,
                               sigma=sigma, mode=mode)
    mask = jnp.asarray(visible).astype(jnp.float32)
    if not boundary:
        return heatmaps, mask
    curves = render_boundary_heatmap(landmarks, scheme, heatmap_size=heatmap_size, stride=stride,
                                     sigma=boundary_sigma)
    return (jnp.concatenate([heatmaps, curves], axis=-1),
            jnp.concatenate([mask, jnp.ones_like(mask[:, :1])], axis=-1))
