"""Heatmap decoding: the reference quarter-pixel rule and the sub-pixel Newton estimator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awing_jax.decode import decode_heatmaps
from awing_jax.targets import render_heatmaps

STRIDE = 4
SIZE = 16  # heatmap side; input side 64
INPUT_RANGE = (-0.5, STRIDE * SIZE - 0.5 - 1e-3)  # input coordinates whose pixel is on the map

points_on_map = st.lists(st.tuples(st.floats(*INPUT_RANGE), st.floats(*INPUT_RANGE)),
                         min_size=8, max_size=8)


def to_heatmap(x):
    return (np.asarray(x, np.float64) + 0.5) / STRIDE - 0.5


def gaussian_map(mean, covariance, amplitude=1.0, size=SIZE):
    """Untruncated (size, size) Gaussian, NumPy float64, heatmap coordinates."""
    v, u = np.mgrid[0:size, 0:size]
    d = np.stack([u - mean[0], v - mean[1]], axis=-1)
    mahalanobis2 = np.einsum("...i,ij,...j->...", d, np.linalg.inv(covariance), d)
    return amplitude * np.exp(-0.5 * mahalanobis2)


# ------------------------------------------------------------------------------------ reference


def test_reference_rule_on_hand_made_maps():
    heat = np.zeros((1, 8, 8, 5), np.float32)
    # Interior peak, right > left and below > above: +0.25 in x and y.
    heat[0, 4, 3, 0], heat[0, 4, 4, 0], heat[0, 4, 2, 0] = 1.0, 0.5, 0.2
    heat[0, 3, 3, 0], heat[0, 5, 3, 0] = 0.1, 0.3
    # Interior peak, left > right and above > below: -0.25 in x and y.
    heat[0, 2, 5, 1], heat[0, 2, 4, 1], heat[0, 2, 6, 1] = 1.0, 0.6, 0.1
    heat[0, 1, 5, 1], heat[0, 3, 5, 1] = 0.4, 0.0
    # Interior peak with tied neighbours: no step.
    heat[0, 5, 2, 2], heat[0, 5, 1, 2], heat[0, 5, 3, 2] = 1.0, 0.5, 0.5
    heat[0, 4, 2, 2] = heat[0, 6, 2, 2] = 0.3
    # Peak on the left border (unequal neighbours in y): no step in either axis.
    heat[0, 3, 0, 3], heat[0, 2, 0, 3], heat[0, 4, 0, 3], heat[0, 3, 1, 3] = 1.0, 0.9, 0.1, 0.5
    # Peak on the bottom border (right > left): no step in either axis.
    heat[0, 7, 4, 4], heat[0, 7, 5, 4], heat[0, 7, 3, 4], heat[0, 6, 4, 4] = 1.0, 0.8, 0.1, 0.5
    coords, scores = decode_heatmaps(heat, mode="reference", return_scores=True)
    cells = np.array([[3.25, 4.25], [4.75, 1.75], [2.0, 5.0], [0.0, 3.0], [4.0, 7.0]])
    np.testing.assert_allclose(coords[0], STRIDE * (cells + 0.5) - 0.5, atol=1e-6)
    np.testing.assert_allclose(scores, np.ones((1, 5)))


@settings(max_examples=50, deadline=None)
@given(points_on_map)
def test_reference_round_trip_is_the_cell_centre(points):
    """Reference rendering then reference decoding returns the centre of the stride cell.

    The rendered peak sits on j = floor((x + 0.5)/s) and the map is symmetric about it (the border
    only clips pixels beyond the map), so the argmax is j, its two neighbours tie and the 0.25 rule
    never moves it: x_hat = s*(j + 0.5) - 0.5. As s*j - 0.5 <= x < s*j + s - 0.5, the error
    x - x_hat lies in [-s/2, s/2): [-2, 2) input px per axis for s = 4, whatever x.
    """
    points = np.array(points, np.float32)[None]
    heat = render_heatmaps(points, np.ones((1, 8), bool), heatmap_size=SIZE, mode="reference")
    decoded = np.asarray(decode_heatmaps(heat, stride=STRIDE, mode="reference"))
    cell = np.floor((points + np.float32(0.5)) / np.float32(STRIDE))
    np.testing.assert_allclose(decoded, STRIDE * cell + (STRIDE - 1) / 2, atol=1e-5)
    error = points.astype(np.float64) - decoded
    assert np.all(error >= -STRIDE / 2 - 1e-4)
    assert np.all(error < STRIDE / 2 + 1e-4)


# ------------------------------------------------------------------------------------ sub-pixel


def near_border_points(rng, n):
    """Input points within one heatmap pixel of an edge or a corner of the map."""
    low, high = INPUT_RANGE
    low_edge = rng.uniform(low, low + STRIDE, (n, 2))
    high_edge = rng.uniform(high - STRIDE, high, (n, 2))
    edge = np.where(rng.uniform(size=(n, 2)) < 0.5, low_edge, high_edge)
    anywhere = rng.uniform(low, high, (n, 2))
    pick = rng.integers(0, 3, n)  # 0: x near an edge, 1: y near an edge, 2: a corner
    x = np.where(pick == 1, anywhere[:, 0], edge[:, 0])
    y = np.where(pick == 0, anywhere[:, 1], edge[:, 1])
    return np.stack([x, y], axis=-1).astype(np.float32)


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_subpixel_round_trip_near_borders(sigma):
    points = near_border_points(np.random.default_rng(int(sigma * 10)), 64)[None]
    heat = render_heatmaps(points, np.ones((1, 64), bool), heatmap_size=SIZE, sigma=sigma)
    decoded = np.asarray(decode_heatmaps(heat, stride=STRIDE))
    np.testing.assert_allclose(decoded, points, atol=0.05 * STRIDE)


@settings(max_examples=50, deadline=None)
@given(points_on_map, st.sampled_from([1.0, 1.5, 2.0]))
def test_subpixel_round_trip(points, sigma):
    points = np.array(points, np.float32)[None]
    heat = render_heatmaps(points, np.ones((1, 8), bool), heatmap_size=SIZE, sigma=sigma)
    decoded = np.asarray(decode_heatmaps(heat, stride=STRIDE))
    np.testing.assert_allclose(decoded, points, atol=0.05 * STRIDE)


def test_subpixel_is_exact_on_untruncated_gaussians():
    rng = np.random.default_rng(0)
    means, maps = [], []
    for _ in range(12):
        mean = rng.uniform(2.0, SIZE - 3.0, 2)
        s1 = rng.uniform(1.0, 2.5)
        s2 = s1 * rng.uniform(1 / 1.4, 1.4)
        c, s = np.cos(angle := rng.uniform(0, np.pi)), np.sin(angle)
        rotation = np.array([[c, -s], [s, c]])
        covariance = rotation @ np.diag([s1**2, s2**2]) @ rotation.T
        means.append(mean)
        maps.append(gaussian_map(mean, covariance, amplitude=rng.uniform(0.2, 2.0)))
    heat = np.stack(maps, axis=-1)[None].astype(np.float32)
    decoded = np.asarray(decode_heatmaps(heat, stride=STRIDE))[0]
    np.testing.assert_allclose(to_heatmap(decoded), np.array(means), atol=2e-3)


def test_one_dimensional_fallback_when_the_patch_has_zeros():
    # Only the argmax's row and column are non-zero: no 2-D Hessian, but each 1-D profile is an
    # exact Gaussian, so the per-axis parabola of log-values finds the centre.
    mean = np.array([5.3, 6.8])
    profile = gaussian_map(mean, np.eye(2))
    heat = np.zeros((SIZE, SIZE))
    heat[7, :], heat[:, 5] = profile[7, :], profile[:, 5]
    decoded = np.asarray(decode_heatmaps(heat[None, :, :, None].astype(np.float32)))[0, 0]
    np.testing.assert_allclose(to_heatmap(decoded), mean, atol=1e-3)


def test_subpixel_step_is_clipped_to_one_pixel():
    # A peak far off the left edge: its extrapolated centre (-3) is cut back to argmax - 1.
    heat = gaussian_map((-3.0, 6.0), 1.5**2 * np.eye(2))[None, :, :, None].astype(np.float32)
    decoded = np.asarray(decode_heatmaps(heat))[0, 0]
    np.testing.assert_allclose(to_heatmap(decoded), [-1.0, 6.0], atol=1e-3)


# ---------------------------------------------------------------------------- degenerate inputs


def degenerate_maps():
    rng = np.random.default_rng(1)
    spike = np.zeros((SIZE, SIZE))
    spike[4, 3] = 1.0
    plateau = np.zeros((SIZE, SIZE))
    plateau[5:8, 9:12] = 0.7
    return np.stack([np.zeros((SIZE, SIZE)), np.full((SIZE, SIZE), 0.3),
                     np.full((SIZE, SIZE), -0.2), rng.normal(size=(SIZE, SIZE)), spike, plateau],
                    axis=-1)[None].astype(np.float32)


@pytest.mark.parametrize("mode", ["subpixel", "reference"])
def test_degenerate_maps_give_finite_values_and_gradients(mode):
    heat = jnp.asarray(degenerate_maps())
    coords, scores = decode_heatmaps(heat, mode=mode, return_scores=True)
    coords = np.asarray(coords)[0]
    assert np.all(np.isfinite(coords))
    np.testing.assert_allclose(scores[0], heat[0].max(axis=(0, 1)))
    flat = np.asarray(heat[0]).reshape(-1, heat.shape[-1]).argmax(axis=0)
    argmax = STRIDE * np.stack([flat % SIZE, flat // SIZE], -1) + (STRIDE - 1) / 2
    assert np.all(np.abs(coords - argmax) <= STRIDE + 1e-4)  # at most 1 heatmap px away
    # No landmark evidence around the argmax (zero, flat, spike): the argmax itself.
    np.testing.assert_allclose(coords[[0, 1, 2, 4]], argmax[[0, 1, 2, 4]], atol=1e-6)
    gradient = jax.grad(lambda h: decode_heatmaps(h, mode=mode).sum())(heat)
    assert np.all(np.isfinite(np.asarray(gradient)))


def newton_decode_np(heat):
    """Float64 NumPy Newton step on the log of the 3x3 patch at the argmax (the estimator's
    definition), in input pixels."""
    cy, cx = np.unravel_index(np.argmax(heat), heat.shape)
    log = np.log(heat[cy - 1:cy + 2, cx - 1:cx + 2])
    gradient = np.array([log[1, 2] - log[1, 0], log[2, 1] - log[0, 1]]) / 2
    hxy = (log[2, 2] - log[2, 0] - log[0, 2] + log[0, 0]) / 4
    hessian = np.array([[log[1, 2] - 2 * log[1, 1] + log[1, 0], hxy],
                        [hxy, log[2, 1] - 2 * log[1, 1] + log[0, 1]]])
    u = np.array([cx, cy]) - np.linalg.solve(hessian, gradient)
    return STRIDE * (u + 0.5) - 0.5


def test_subpixel_gradient_equals_finite_differences_of_the_estimator():
    """d(x, y)/d heatmap from jax.grad against central differences of a float64 NumPy
    implementation: equal on the 3x3 patch around the peak, exactly 0 elsewhere, and blind to the
    map's scale (sum of h * dx/dh = 0: a brighter peak is not a moved one)."""
    covariance = np.array([[1.3, 0.4], [0.4, 0.8]])  # correlated: the Hessian's xy term matters
    heat64 = gaussian_map((7.3, 8.6), covariance) + 0.02 * np.random.default_rng(0).random(
        (SIZE, SIZE))  # not exactly Gaussian, so every patch value carries weight
    heat = jnp.asarray(heat64[None, :, :, None], jnp.float32)
    jacobian = np.stack([np.asarray(jax.grad(lambda h, k=k: decode_heatmaps(h)[0, 0, k])(heat))
                         [0, :, :, 0] for k in range(2)])
    expected = np.zeros((2, SIZE, SIZE))
    step = 1e-6
    for v in range(SIZE):
        for u in range(SIZE):
            plus, minus = heat64.copy(), heat64.copy()
            plus[v, u] += step
            minus[v, u] -= step
            expected[:, v, u] = (newton_decode_np(plus) - newton_decode_np(minus)) / (2 * step)
    np.testing.assert_allclose(newton_decode_np(heat64),
                               np.asarray(decode_heatmaps(heat))[0, 0], atol=1e-3)
    row, col = np.unravel_index(np.argmax(heat64), heat64.shape)
    assert (row, col) == (9, 7)  # the peak's pixel, nearest to (7.3, 8.6)
    patch = (slice(row - 1, row + 2), slice(col - 1, col + 2))
    assert np.abs(expected[(slice(None), *patch)]).min() > 1e-3  # all nine taps matter
    np.testing.assert_allclose(jacobian, expected, rtol=2e-3, atol=2e-3)
    outside = np.ones((SIZE, SIZE), bool)
    outside[patch] = False
    assert not np.any(jacobian[:, outside])
    np.testing.assert_allclose(np.sum(jacobian * heat64, axis=(1, 2)), 0.0, atol=1e-4)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        decode_heatmaps(jnp.zeros((1, 8, 8, 1)), mode="argmax")
