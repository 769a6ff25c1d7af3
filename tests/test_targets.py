"""Landmark and boundary heatmaps against independent NumPy/SciPy computations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import CubicSpline

from awing_jax.landmarks import SCHEMES, LandmarkScheme
from awing_jax.targets import (
    interpolating_curve,
    render_boundary_heatmap,
    render_heatmaps,
    render_targets,
)

STRIDE = 4


def curve_scheme(*groups, num_landmarks=None):
    """A throw-away scheme whose only content is the given boundary groups."""
    n = num_landmarks or (max(max(g) for g in groups) + 1)
    return LandmarkScheme(name="test", num_landmarks=n, flip_permutation=tuple(range(n)),
                          boundary_groups=tuple(tuple(g) for g in groups), normalisation={},
                          default_norm="box")


def pixel_centres(size):
    """(size*size, 2) heatmap pixel centres (u, v), row-major like heatmap[y, x]."""
    v, u = np.mgrid[0:size, 0:size]
    return np.stack([u.ravel(), v.ravel()], axis=-1).astype(np.float64)


def gaussian_of_distance(d, sigma):
    return np.where(d >= 3 * sigma, 0.0, np.exp(-(d**2) / (2 * sigma**2)))


def segment_distance(p, a, b):
    """Closed-form distance from points p (N, 2) to the segment a-b."""
    e = b - a
    t = np.clip(((p - a) @ e) / max(e @ e, 1e-300), 0.0, 1.0)
    return np.linalg.norm(p - a - t[:, None] * e, axis=-1)


def dense_curve_distance(p, curve):
    """Distance from points p (N, 2) to a densely sampled curve (M, 2)."""
    return np.sqrt(((p[:, None, :] - curve[None, :, :]) ** 2).sum(-1)).min(-1)


def to_heatmap(x):
    return (np.asarray(x, np.float64) + 0.5) / STRIDE - 0.5


def compare_away_from_cutoff(rendered, d, sigma, atol):
    """Rendered map vs exp(-d^2/2sigma^2) truncated at 3 sigma, skipping pixels on the cut."""
    expected = gaussian_of_distance(d, sigma)
    on_cut = np.abs(d - 3 * sigma) < 0.05
    np.testing.assert_allclose(rendered.ravel()[~on_cut], expected[~on_cut], atol=atol)
    assert np.all(rendered.ravel()[d >= 3 * sigma + 0.05] == 0.0)
    assert np.all(rendered.ravel()[d < 3 * sigma - 0.05] > 0.0)


# ---------------------------------------------------------------------------- reference rendering


def test_reference_known_values():
    x, y = 21.0, 13.0  # heatmap cell floor(21.5/4) = 5, floor(13.5/4) = 3
    heat = np.asarray(render_heatmaps(jnp.array([[[x, y]]]), jnp.array([[True]]),
                                      heatmap_size=16, mode="reference"))[0, :, :, 0]
    assert np.unravel_index(heat.argmax(), heat.shape) == (3, 5)
    assert heat[3, 5] == 1.0
    assert heat[3, 8] == pytest.approx(0.230, abs=5e-4)  # 3 px along x
    assert heat[0, 5] == pytest.approx(0.230, abs=5e-4)  # 3 px along y
    assert heat[0, 8] == pytest.approx(0.053, abs=5e-4)  # corner (3, 3)
    assert heat[6, 2] == pytest.approx(0.053, abs=5e-4)
    window = np.zeros_like(heat, bool)
    window[0:7, 2:9] = True
    assert np.all(heat[~window] == 0.0)
    assert np.all(heat[window] > 0.05)


@settings(max_examples=50, deadline=None)
@given(st.floats(-0.5, 63.49), st.floats(-0.5, 63.49))
def test_reference_matches_numpy(x, y):
    size = 16
    heat = np.asarray(render_heatmaps(jnp.array([[[x, y]]], jnp.float32), jnp.array([[1.0]]),
                                      heatmap_size=size, mode="reference"))[0, :, :, 0]
    jx, jy = np.floor((np.float32(x) + 0.5) / 4), np.floor((np.float32(y) + 0.5) / 4)
    v, u = np.mgrid[0:size, 0:size]
    inside = (np.abs(u - jx) <= 3) & (np.abs(v - jy) <= 3)
    expected = np.where(inside, np.exp(-((u - jx) ** 2 + (v - jy) ** 2) / (2 * 1.75**2)), 0.0)
    np.testing.assert_allclose(heat, expected, atol=1e-6)
    assert heat[int(jy), int(jx)] == 1.0


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_reference_rendering_at_other_sigmas(sigma):
    """The window is 6 sigma + 1 pixels wide and the true standard deviation (6 sigma + 1) / 4,
    in the authors' rendering, at any nominal sigma (not only at 1)."""
    size = 24
    rng = np.random.default_rng(int(sigma * 10))
    points = rng.uniform(10, 4 * size - 10, (2, 3, 2)).astype(np.float32)
    heat = np.asarray(render_heatmaps(points, np.ones((2, 3), bool), heatmap_size=size,
                                      sigma=sigma, mode="reference"))
    v, u = np.mgrid[0:size, 0:size]
    std = (6 * sigma + 1) / 4
    for b in range(2):
        for l in range(3):
            jx, jy = np.floor((points[b, l] + 0.5) / 4)
            inside = (np.abs(u - jx) <= 3 * sigma) & (np.abs(v - jy) <= 3 * sigma)
            expected = np.where(inside, np.exp(-((u - jx) ** 2 + (v - jy) ** 2) / (2 * std**2)),
                                0.0)
            np.testing.assert_allclose(heat[b, :, :, l], expected, atol=1e-6)


# ----------------------------------------------------------------------------- sub-pixel rendering


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_subpixel_matches_numpy(sigma):
    size = 20
    rng = np.random.default_rng(7)
    points = rng.uniform(-12, 4 * size + 12, (3, 6, 2)).astype(np.float32)
    heat = np.asarray(render_heatmaps(points, np.ones((3, 6), bool), heatmap_size=size,
                                      sigma=sigma))
    centres = pixel_centres(size)
    for b in range(3):
        for l in range(6):
            d = np.linalg.norm(centres - to_heatmap(points[b, l]), axis=-1)
            compare_away_from_cutoff(heat[b, :, :, l], d, sigma, atol=1e-6)


def test_invisible_landmark_is_a_zero_channel():
    points = jnp.array([[[30.0, 30.0], [12.0, 40.0], [np.nan, np.nan]]])
    visible = jnp.array([[True, False, False]])
    for mode in ("subpixel", "reference"):
        heat = np.asarray(render_heatmaps(points, visible, heatmap_size=16, mode=mode))
        assert heat[..., 0].max() > 0.9
        assert np.all(heat[..., 1:] == 0.0)


@pytest.mark.parametrize("mode", ["subpixel", "reference"])
def test_points_outside_the_map(mode):
    points = jnp.array([[[-1e6, 5.0], [1e9, -1e9], [-30.0, 20.0], [70.0, 70.0], [-3.0, -3.0]]])
    heat = np.asarray(render_heatmaps(points, jnp.ones((1, 5)), heatmap_size=16, mode=mode))
    assert np.all(np.isfinite(heat))
    assert np.all((heat >= 0.0) & (heat <= 1.0))
    assert np.all(heat[..., :3] == 0.0)
    assert heat[..., 4].max() > 0.0  # centre just off the map: its tail is drawn


# ------------------------------------------------------------------------------ boundary heatmap


@pytest.mark.parametrize("sigma", [1.0, 1.5])
def test_single_segment_is_exact(sigma):
    size = 24
    rng = np.random.default_rng(3)
    scheme = curve_scheme((0, 1))
    points = rng.uniform(-8, 4 * size + 8, (4, 2, 2)).astype(np.float32)
    heat = np.asarray(render_boundary_heatmap(points, scheme, heatmap_size=size, sigma=sigma))
    assert heat.shape == (4, size, size, 1)
    centres = pixel_centres(size)
    for b in range(4):
        a, e = to_heatmap(points[b, 0]), to_heatmap(points[b, 1])
        compare_away_from_cutoff(heat[b, ..., 0], segment_distance(centres, a, e), sigma, 1e-5)


def test_collinear_points_give_the_straight_segment():
    # Chord-length parameterisation of collinear, ordered points is linear in the parameter, so
    # every interpolant (parabola, cubic spline) is the segment between the end points.
    size = 24
    start, direction = np.array([9.0, 71.0]), np.array([0.8, -0.6])
    steps = np.cumsum([0.0, 7.0, 19.0, 4.0, 11.0, 23.0])
    points = (start + steps[:, None] * direction)[None].astype(np.float32)
    centres = pixel_centres(size)
    d = segment_distance(centres, to_heatmap(points[0, 0]), to_heatmap(points[0, -1]))
    for group in [(0, 2, 5), (0, 1, 3, 5), tuple(range(6))]:
        heat = np.asarray(render_boundary_heatmap(points, curve_scheme(group, num_landmarks=6),
                                                  heatmap_size=size))
        compare_away_from_cutoff(heat[0, ..., 0], d, 1.0, 1e-4)


def test_curves_pass_through_landmarks_on_pixel_centres():
    scheme = SCHEMES["aflw19"]
    rng = np.random.default_rng(11)
    cells = rng.choice(32 * 32, size=19, replace=False)
    ju, jv = cells % 32, cells // 32
    points = np.stack([4 * ju + 1.5, 4 * jv + 1.5], axis=-1)[None].astype(np.float32)
    heat = np.asarray(render_boundary_heatmap(points, scheme, heatmap_size=32))[0, ..., 0]
    in_groups = sorted({i for g in scheme.boundary_groups for i in g})
    np.testing.assert_allclose(heat[jv[in_groups], ju[in_groups]], 1.0, atol=1e-5)


def chord_parameter(points):
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def parabola_through(points, num=6000):
    t = chord_parameter(points)
    fine = np.linspace(0.0, t[-1], num)
    return np.stack([np.polyval(np.polyfit(t, points[:, k], 2), fine) for k in (0, 1)], -1)


def not_a_knot_spline_through(points, num=6000):
    t = chord_parameter(points)
    return CubicSpline(t, points, bc_type="not-a-knot")(np.linspace(0.0, t[-1], num))


def wavy_points(rng, n, size):
    """n landmarks on a random wavy path across a size x size heatmap, in input pixels."""
    s = np.linspace(0.15, 0.85, n) * 4 * size
    wobble = rng.uniform(-0.06, 0.06, n) * 4 * size
    angle = rng.uniform(0, 2 * np.pi)
    c, sn = np.cos(angle), np.sin(angle)
    centred = np.stack([s - 2 * size, wobble], axis=-1) @ np.array([[c, sn], [-sn, c]])
    return (centred + 2 * size).astype(np.float32)


@pytest.mark.parametrize(("n", "reference"), [(3, parabola_through), (4, not_a_knot_spline_through),
                                              (6, not_a_knot_spline_through)])
@pytest.mark.parametrize(("samples", "atol"), [(64, 2e-3), (8, 2e-2)])
def test_curve_matches_numpy_interpolant(n, reference, samples, atol):
    size = 24
    rng = np.random.default_rng(n)
    scheme = curve_scheme(tuple(range(n)))
    centres = pixel_centres(size)
    points = np.stack([wavy_points(rng, n, size) for _ in range(2)])
    heat = np.asarray(render_boundary_heatmap(points, scheme, heatmap_size=size,
                                              samples_per_interval=samples))
    for b in range(2):
        d = dense_curve_distance(centres, reference(to_heatmap(points[b])))
        expected = gaussian_of_distance(d, 1.0)
        on_cut = np.abs(d - 3.0) < 0.05
        np.testing.assert_allclose(heat[b, ..., 0].ravel()[~on_cut], expected[~on_cut], atol=atol)


def test_interpolating_curve_hits_every_landmark():
    rng = np.random.default_rng(5)
    for n in (2, 3, 4, 5, 33):
        points = rng.uniform(0, 60, (3, n, 2)).astype(np.float32)
        polyline = np.asarray(interpolating_curve(jnp.asarray(points), 8))
        vertices = polyline if n == 2 else polyline[:, ::8]
        np.testing.assert_allclose(vertices, points, atol=1e-4)


def test_curves_share_one_channel_as_a_maximum():
    size = 24
    rng = np.random.default_rng(9)
    points = np.stack([wavy_points(rng, 7, size) for _ in range(2)])
    groups = [(0, 1, 2), (2, 3, 4, 5, 6), (1, 5)]
    together = render_boundary_heatmap(points, curve_scheme(*groups), heatmap_size=size)
    alone = [render_boundary_heatmap(points, curve_scheme(g, num_landmarks=7), heatmap_size=size)
             for g in groups]
    np.testing.assert_allclose(together, np.maximum.reduce([np.asarray(a) for a in alone]),
                               atol=1e-6)


def test_coincident_landmarks_stay_finite():
    for name, scheme in SCHEMES.items():
        for value in (0.0, 29.5):  # input 29.5 is heatmap pixel centre 7
            points = np.full((1, scheme.num_landmarks, 2), value, np.float32)
            heat = np.asarray(render_boundary_heatmap(points, name, heatmap_size=16))[0, ..., 0]
            assert np.all(np.isfinite(heat))
            d = np.linalg.norm(pixel_centres(16) - to_heatmap([value, value]), axis=-1)
            compare_away_from_cutoff(heat, d, 1.0, 1e-4)


# ---------------------------------------------------------------------------- train-step targets


@pytest.mark.parametrize(("name", "batch", "size"), [("wflw", 2, 16), ("300w", 3, 16),
                                                     ("cofw", 1, 24), ("aflw19", 2, 20)])
def test_render_targets_every_scheme_under_jit(name, batch, size):
    scheme = SCHEMES[name]
    num = scheme.num_landmarks
    rng = np.random.default_rng(num)
    points = rng.uniform(-10, 4 * size + 10, (batch, num, 2)).astype(np.float32)
    visible = rng.uniform(size=(batch, num)) > 0.2
    render = jax.jit(functools.partial(render_targets, scheme=scheme, heatmap_size=size))
    heat, mask = render(points, visible)
    assert heat.shape == (batch, size, size, num + 1)
    assert mask.shape == (batch, num + 1)
    heat, mask = np.asarray(heat), np.asarray(mask)
    assert np.all(np.isfinite(heat)) and np.all((heat >= 0) & (heat <= 1))
    np.testing.assert_array_equal(mask, np.concatenate([visible, np.ones((batch, 1))], -1))
    np.testing.assert_allclose(
        heat[..., :num], render_heatmaps(points, visible, heatmap_size=size), atol=1e-5)
    np.testing.assert_allclose(
        heat[..., num:], render_boundary_heatmap(points, scheme, heatmap_size=size), atol=1e-5)
    assert np.all(np.where(visible[:, None, None, :], 0.0, heat[..., :num]) == 0.0)
    plain, plain_mask = render_targets(points, visible, None, heatmap_size=size, boundary=False,
                                       mode="reference")
    assert plain.shape == (batch, size, size, num) and plain_mask.shape == (batch, num)


@pytest.mark.parametrize("mode", ["subpixel", "reference"])
def test_render_targets_uses_each_sigma_for_its_channels(mode):
    """Landmark sigma 1.5 and boundary sigma 2.5, each checked against its closed form: neither
    may stand in for the other (or be left at its default of 1)."""
    size = 24
    scheme = curve_scheme((0, 1))
    points = np.array([[[30.0, 41.0], [70.0, 55.0]]], np.float32)
    heat, _ = render_targets(points, np.ones((1, 2), bool), scheme, heatmap_size=size,
                             sigma=1.5, boundary_sigma=2.5, mode=mode)
    heat = np.asarray(heat)[0]
    centres = pixel_centres(size)
    a, e = to_heatmap(points[0, 0]), to_heatmap(points[0, 1])
    compare_away_from_cutoff(heat[..., 2], segment_distance(centres, a, e), 2.5, 1e-5)
    expected = render_heatmaps(points, np.ones((1, 2), bool), heatmap_size=size, sigma=1.5,
                               mode=mode)
    np.testing.assert_allclose(heat[..., :2], np.asarray(expected)[0], atol=1e-6)
    if mode == "subpixel":
        compare_away_from_cutoff(heat[..., 0], np.linalg.norm(centres - a, axis=-1), 1.5, 1e-6)


def test_train_step_objective_renders_targets_with_the_configs_sigmas_and_mode():
    """The objective is 0 exactly when the prediction is the target rendered with the config's
    sigma, boundary sigma and mode, and not with any of them swapped or left at 1."""
    from awing_jax import trainer
    from configs import tiny

    config = tiny.get_config()  # 32 px input, 8 x 8 heatmaps
    config.loss.kind = "l2"
    config.target.update(sigma=1.5, boundary_sigma=2.5, mode="subpixel")
    scheme = curve_scheme((0, 1), (2, 3, 4), num_landmarks=6)  # cheap curves
    rng = np.random.default_rng(5)
    batch = {"landmarks": rng.uniform(4, 28, (2, 6, 2)).astype(np.float32),
             "visible": np.ones((2, 6), bool)}

    def loss(**target):
        kw = {"sigma": 1.5, "boundary_sigma": 2.5, "mode": "subpixel", **target}
        heat, _ = render_targets(batch["landmarks"], batch["visible"], scheme, heatmap_size=8,
                                 **kw)
        return float(trainer.heatmap_objective([heat], batch, config, scheme))

    assert loss() == 0.0
    for wrong in ({"sigma": 2.5, "boundary_sigma": 1.5}, {"sigma": 1.0}, {"boundary_sigma": 1.0},
                  {"mode": "reference"}):
        assert loss(**wrong) > 1e-4, wrong


def test_wrong_number_of_landmarks_is_rejected():
    with pytest.raises(ValueError, match="98"):
        render_boundary_heatmap(np.zeros((1, 68, 2), np.float32), "wflw", heatmap_size=16)
    with pytest.raises(ValueError, match="mode"):
        render_heatmaps(np.zeros((1, 2, 2)), np.ones((1, 2)), heatmap_size=8, mode="dark")
