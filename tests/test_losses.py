"""Tests for awing_jax.losses: closed forms, NumPy/SciPy references and the paper's claims."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from hypothesis import example, given, settings
from hypothesis import strategies as st

from awing_jax.losses import (
    LOSSES,
    adaptive_wing_loss,
    heatmap_loss,
    l1_loss,
    l2_loss,
    loss_weight_map,
    smooth_l1_loss,
    wing_loss,
)

FAST = settings(max_examples=50, deadline=None)
# Compiled once per shape and dtype: much faster in tests than running the ops one by one.
awing = jax.jit(adaptive_wing_loss, static_argnames=("alpha", "omega", "epsilon", "theta"))
wing = jax.jit(wing_loss, static_argnames=("w", "epsilon"))
AWING_DEFAULTS = dict(alpha=2.1, omega=14.0, epsilon=1.0, theta=0.5)
AWING_PARAMS = [AWING_DEFAULTS, dict(alpha=2.5, omega=10.0, epsilon=2.0, theta=0.3)]


# ---- independent float64 NumPy references, written from the papers' equations -----------------

def np_awing_constants(y, alpha=2.1, omega=14.0, epsilon=1.0, theta=0.5):
    """A and C of AWing paper Eq. 6, written exactly as printed (two separate powers of θ/ε)."""
    p = alpha - np.asarray(y, np.float64)
    a = omega * (1 / (1 + (theta / epsilon) ** p)) * p * (theta / epsilon) ** (p - 1) / epsilon
    c = theta * a - omega * np.log(1 + (theta / epsilon) ** p)
    return a, c


def np_awing(y, yhat, alpha=2.1, omega=14.0, epsilon=1.0, theta=0.5):
    """AWing paper Eq. 6."""
    y, yhat = np.asarray(y, np.float64), np.asarray(yhat, np.float64)
    d, p = np.abs(y - yhat), alpha - y
    a, c = np_awing_constants(y, alpha, omega, epsilon, theta)
    return np.where(d < theta, omega * np.log(1 + (d / epsilon) ** p), a * d - c)


def np_awing_grad(y, yhat, alpha=2.1, omega=14.0, epsilon=1.0, theta=0.5):
    """∂AWing/∂ŷ by hand. With d = |ŷ − y|, ∂d/∂ŷ = sign(ŷ − y) and, for d < θ,
    ∂/∂d ω ln(1 + (d/ε)^p) = ω · p (d/ε)^(p−1) (1/ε) / (1 + (d/ε)^p); for d ≥ θ, ∂/∂d (A d − C) = A.
    A and C depend on y only, so they contribute nothing to the derivative with respect to ŷ."""
    y, yhat = np.asarray(y, np.float64), np.asarray(yhat, np.float64)
    d, p, sign = np.abs(yhat - y), alpha - y, np.sign(yhat - y)
    a, _ = np_awing_constants(y, alpha, omega, epsilon, theta)
    near = omega * p * (d / epsilon) ** (p - 1) / epsilon / (1 + (d / epsilon) ** p)
    return sign * np.where(d < theta, near, a)


def np_wing(x, w=10.0, epsilon=2.0):
    x = np.abs(np.asarray(x, np.float64))
    c = w - w * np.log(1 + w / epsilon)
    return np.where(x < w, w * np.log(1 + x / epsilon), x - c)


def np_smooth_l1(x, beta=1.0):
    x = np.abs(np.asarray(x, np.float64))
    return np.where(x < beta, 0.5 * x**2 / beta, x - 0.5 * beta)


NP_LOSSES = {
    "awing": np_awing,
    "wing": lambda y, yhat, **kw: np_wing(yhat - y, **kw),
    "l2": lambda y, yhat: (yhat - y) ** 2,
    "l1": lambda y, yhat: np.abs(yhat - y),
    "smooth_l1": lambda y, yhat, **kw: np_smooth_l1(yhat - y, **kw),
}


def np_weight_map(target, weight=10.0, threshold=0.2, kernel_size=3):
    """Weighted Loss Map through scipy, one (H, W) slice at a time."""
    target = np.asarray(target, np.float64)
    out = np.empty_like(target)
    for b in range(target.shape[0]):
        for c in range(target.shape[-1]):
            dilated = scipy.ndimage.grey_dilation(
                target[b, :, :, c], size=(kernel_size, kernel_size), mode="constant", cval=0.0)
            out[b, :, :, c] = weight * (dilated >= threshold) + 1
    return out


def gaussian(size, x, y, sigma=1.0):
    """(size, size) Gaussian with peak 1 at integer pixel (x, y)."""
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


def grad_pred(loss_fn, **kw):
    """jit(vmap(∂loss/∂prediction)) over flat arrays of (prediction, target)."""
    return jax.jit(jax.vmap(jax.grad(functools.partial(loss_fn, **kw))))


# ---- Adaptive Wing: values and derivative -----------------------------------------------------

@pytest.mark.parametrize("params", AWING_PARAMS)
def test_awing_matches_paper_formula_on_grid(params):
    y, yhat = np.meshgrid(np.linspace(0, 1, 41, dtype=np.float32),
                          np.linspace(-1, 2, 301, dtype=np.float32))
    got = np.asarray(awing(jnp.asarray(yhat), jnp.asarray(y), **params))
    np.testing.assert_allclose(got, np_awing(y, yhat, **params), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("params", AWING_PARAMS)
def test_awing_grad_matches_analytic_derivative(params):
    y, yhat = (a.ravel() for a in np.meshgrid(np.linspace(0, 1, 41, dtype=np.float32),
                                              np.linspace(-1, 2, 301, dtype=np.float32)))
    got = np.asarray(grad_pred(adaptive_wing_loss, **params)(jnp.asarray(yhat), jnp.asarray(y)))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, np_awing_grad(y, yhat, **params), rtol=1e-5, atol=1e-6)


def test_awing_hand_computed_values():
    # Log branch, y = 0.2, ŷ = 0.5: d = 0.3, exponent α − y = 1.9,
    # 14·ln(1 + 0.3^1.9) = 14·ln(1.1015150) = 14·0.0966865 = 1.353612.
    # The community version with d/ω inside the log gives 14·ln(1 + (0.3/14)^1.9) = 0.0094.
    assert float(awing(jnp.float32(0.5), jnp.float32(0.2))) == pytest.approx(
        1.353612, rel=1e-6)
    # Linear branch, y = 0, ŷ = 0.8: (θ/ε)^2.1 = 0.5^2.1 = 0.2332582,
    # A = 14·(1/1.2332582)·2.1·0.5^1.1 = 11.121422, C = 0.5·A − 14·ln(1.2332582) = 2.625476,
    # A·0.8 − C = 6.271662.
    assert float(awing(jnp.float32(0.8), jnp.float32(0.0))) == pytest.approx(
        6.271662, rel=1e-6)


@pytest.mark.parametrize("params", AWING_PARAMS)
@pytest.mark.parametrize("side", [1.0, -1.0])
def test_awing_continuous_at_theta(params, side):
    theta = params["theta"]
    # y = k/16 and y ± θ are exact in float32, so d = θ exactly and the linear branch is taken:
    # A·θ − C must equal the log branch's closed form ω·ln(1 + (θ/ε)^(α−y)).
    y = np.arange(17, dtype=np.float32) / 16
    at = np.asarray(awing(jnp.asarray(y + np.float32(side * theta)), jnp.asarray(y),
                                       **params))
    log_branch = params["omega"] * np.log1p(
        (theta / params["epsilon"]) ** (params["alpha"] - y.astype(np.float64)))
    np.testing.assert_allclose(at, log_branch, rtol=1e-6)

    # Either side of θ: the value changes by about A·2δ, the derivative by O(δ).
    delta = 1e-4
    below = jnp.asarray(y + side * (theta - delta), jnp.float32)
    above = jnp.asarray(y + side * (theta + delta), jnp.float32)
    ys = jnp.asarray(y)
    v_below = np.asarray(awing(below, ys, **params))
    v_above = np.asarray(awing(above, ys, **params))
    slope = np_awing_constants(y, **params)[0]
    np.testing.assert_allclose(v_above - v_below, 2 * delta * slope, rtol=0.05)
    g = grad_pred(adaptive_wing_loss, **params)
    np.testing.assert_allclose(np.asarray(g(below, ys)), np.asarray(g(above, ys)), rtol=2e-3)
    np.testing.assert_allclose(np.abs(np.asarray(g(above, ys))), slope, rtol=1e-5)


def test_awing_gradient_vanishes_for_background_not_foreground():
    """AWing paper, Sec. 4.1: near d = 0 the loss is like d^2.1 for y = 0, like d^1.1 for y = 1."""
    d = np.geomspace(1e-5, 0.49, 60).astype(np.float32)
    g = grad_pred(adaptive_wing_loss)
    background = np.asarray(g(jnp.asarray(d), jnp.zeros_like(d)))
    foreground = -np.asarray(g(jnp.asarray(1 - d), jnp.ones_like(d)))
    l2 = 2 * d

    # y = 0: ∂L/∂ŷ ≈ ω·α·d^(α−1) = 29.4·d^1.1 → 0, monotonically, faster than linearly.
    assert np.all(np.diff(background) > 0)
    assert background[0] < 1e-4                                  # d = 1e-5: 29.4·10^-5.5 = 9.3e-5
    assert float(g(jnp.float32([1e-4]), jnp.float32([0]))[0]) < 1.5e-3  # 29.4·10^-4.4 = 1.17e-3
    # Ratio to L2's 2d ∝ d^0.1 / (1 + d^2.1), increasing for d < 0.24: AWing's gradient for the
    # background vanishes faster than L2's.
    small = d < 0.2
    assert np.all(np.diff(background[small] / l2[small]) > 0)
    # y = 1: ∂L/∂ŷ ≈ ω·1.1·d^0.1: 4.9 at d = 1e-5, 6.1 at 1e-4, 7.7 at 1e-3 (where L2 gives 0.002).
    assert foreground.min() > 4.5
    assert foreground[d >= 1e-4].min() > 6.0
    g_fg_1e3 = -float(g(jnp.float32([1 - 1e-3]), jnp.float32([1]))[0])
    assert g_fg_1e3 > 7.5
    assert g_fg_1e3 / 2e-3 > 3000
    assert g_fg_1e3 / float(g(jnp.float32([1e-3]), jnp.float32([0]))[0]) > 500


# ---- Wing --------------------------------------------------------------------------------------

def test_wing_hand_computed_values():
    # |x| = 3 < w: 10·ln(1 + 3/2) = 9.162907; |x| = 12 ≥ w: 12 − (10 − 10·ln 6) = 19.917595.
    got = wing(jnp.float32([3.0, -3.0, 12.0, -12.0]), jnp.float32(0))
    np.testing.assert_allclose(got, [9.162907, 9.162907, 19.917595, 19.917595], rtol=1e-6)


@pytest.mark.parametrize("w, epsilon", [(10.0, 2.0), (0.5, 0.1), (3.0, 1.5)])
def test_wing_continuous_at_w(w, epsilon):
    at = float(wing(jnp.float32(w), jnp.float32(0), w=w, epsilon=epsilon))
    assert at == pytest.approx(w * math.log1p(w / epsilon), rel=1e-6)
    delta = 1e-3 * w
    below = float(wing(jnp.float32(w - delta), jnp.float32(0), w=w, epsilon=epsilon))
    above = float(wing(jnp.float32(w + delta), jnp.float32(0), w=w, epsilon=epsilon))
    assert abs(above - below) < 2.5 * delta  # both one-sided slopes (w/(ε+w), 1) are ≤ 1


@pytest.mark.parametrize("w, epsilon", [(10.0, 2.0), (0.5, 0.1)])
def test_wing_grad_matches_closed_form(w, epsilon):
    x = np.linspace(-3 * w, 3 * w, 601, dtype=np.float32)
    got = np.asarray(grad_pred(wing_loss, w=w, epsilon=epsilon)(jnp.asarray(x), jnp.zeros_like(x)))
    xd = x.astype(np.float64)
    expected = np.sign(xd) * np.where(np.abs(xd) < w, w / (epsilon + np.abs(xd)), 1.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(wing(jnp.asarray(x), 0.0, w=w, epsilon=epsilon)),
                               np_wing(x, w=w, epsilon=epsilon), rtol=1e-5, atol=1e-6)


# ---- the simple losses -------------------------------------------------------------------------

def test_simple_losses_match_their_definitions():
    x = np.linspace(-3, 3, 121, dtype=np.float32)
    target = np.float32(0.25)
    pred = jnp.asarray(x + target)
    err = (x + target).astype(np.float64) - target
    np.testing.assert_allclose(l2_loss(pred, target), err**2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(l1_loss(pred, target), np.abs(err), rtol=1e-6, atol=1e-7)
    for beta in (1.0, 0.3):
        np.testing.assert_allclose(smooth_l1_loss(pred, target, beta=beta),
                                   np_smooth_l1(err, beta=beta), rtol=1e-6, atol=1e-7)
    # Huber: value and slope continuous at |x| = β.
    assert float(smooth_l1_loss(jnp.float32(0.3), 0.0, beta=0.3)) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="beta"):
        smooth_l1_loss(pred, target, beta=0.0)


# ---- properties of every elementwise loss ------------------------------------------------------

# Error scale per loss, so that random errors reach both branches (AWing's θ = 0.5, Wing's w = 10).
SCALE = {"awing": 1.0, "wing": 20.0, "l2": 1.0, "l1": 1.0, "smooth_l1": 2.0}
DTYPES = [jnp.float32, jnp.bfloat16]


@functools.cache
def jitted(kind, dtype_name):
    dtype = jnp.dtype(dtype_name)
    fn = LOSSES[kind]
    value = jax.jit(lambda p, t: fn(p.astype(dtype), t.astype(dtype)))
    grads = jax.jit(jax.grad(lambda p, t: fn(p, t), argnums=(0, 1)))
    return value, lambda p, t: grads(jnp.asarray(p, dtype), jnp.asarray(t, dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("kind", sorted(LOSSES))
@pytest.mark.parametrize("y", [0.0, 1.0, 0.5])
def test_gradients_finite_at_zero_error(kind, dtype, y):
    g_pred, g_target = jitted(kind, jnp.dtype(dtype).name)[1](y, y)
    assert g_pred.dtype == dtype
    assert np.isfinite(float(g_pred)) and np.isfinite(float(g_target))
    assert float(g_pred) == 0.0


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
def test_awing_gradient_finite_at_zero_error_even_with_exponent_below_one(dtype):
    # α − y = 0.5: the slope of the power is infinite at d = 0; the loss must still not give NaN.
    y = jnp.asarray([1.0, 0.9, 0.0], dtype)
    grads = jax.grad(lambda p, t: awing(p, t, alpha=1.5).sum(), argnums=(0, 1))(y, y)
    for g in grads:
        assert np.isfinite(np.asarray(g, np.float32)).all()


@FAST
@given(kind=st.sampled_from(sorted(LOSSES)), dtype=st.sampled_from(["float32", "bfloat16"]),
       y=st.floats(0, 1), d=st.floats(-1.5, 1.5))
@example(kind="awing", dtype="bfloat16", y=0.0, d=0.0)
@example(kind="awing", dtype="bfloat16", y=1.0, d=0.0)
@example(kind="awing", dtype="float32", y=1.0, d=1e-30)
@example(kind="awing", dtype="float32", y=0.0, d=0.5)
def test_gradients_finite_everywhere(kind, dtype, y, d):
    g_pred, g_target = jitted(kind, dtype)[1](y + d * SCALE[kind], y)
    assert np.isfinite(float(g_pred)) and np.isfinite(float(g_target))


@FAST
@given(kind=st.sampled_from(sorted(LOSSES)), y=st.floats(0, 1), d=st.floats(0, 1.5))
def test_symmetric_in_the_sign_of_the_error(kind, y, d):
    value = jitted(kind, "float32")[0]
    d = d * SCALE[kind]
    plus = float(value(jnp.float32(y + d), jnp.float32(y)))
    minus = float(value(jnp.float32(y - d), jnp.float32(y)))
    assert plus == pytest.approx(minus, rel=1e-5, abs=1e-5)


@FAST
@given(kind=st.sampled_from(sorted(LOSSES)), y=st.floats(0, 1), d=st.floats(0, 1.4),
       gap=st.floats(1e-3, 0.5), side=st.sampled_from([1.0, -1.0]))
def test_increasing_in_the_error(kind, y, d, gap, side):
    value = jitted(kind, "float32")[0]
    near, far = d * SCALE[kind], (d + gap) * SCALE[kind]
    assert float(value(jnp.float32(y + side * far), jnp.float32(y))) > float(
        value(jnp.float32(y + side * near), jnp.float32(y)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16],
                         ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_dtype_preserved(kind, dtype):
    pred = jnp.linspace(-1, 2, 12, dtype=dtype).reshape(3, 4)
    out = jax.jit(LOSSES[kind])(pred, jnp.full((3, 4), 0.5, dtype))
    assert out.dtype == dtype and out.shape == (3, 4)
    assert loss_weight_map(pred.reshape(1, 3, 4, 1)).dtype == dtype


@pytest.mark.parametrize("params", AWING_PARAMS)
def test_awing_bfloat16_close_to_float32(params):
    y, yhat = np.meshgrid(np.linspace(0, 1, 11), np.linspace(-1, 2, 31))
    y, yhat = (jnp.asarray(a, jnp.bfloat16) for a in (y, yhat))
    low = awing(yhat, y, **params)
    high = awing(yhat.astype(jnp.float32), y.astype(jnp.float32), **params)
    np.testing.assert_allclose(np.asarray(low, np.float32), high, rtol=1e-2, atol=1e-3)


# ---- Weighted Loss Map -------------------------------------------------------------------------

def test_weight_map_single_landmark():
    heat = gaussian(16, 8, 7)[None, :, :, None]
    weights = np.asarray(loss_weight_map(jnp.asarray(heat, jnp.float32)))
    # σ = 1: exp(−r²/2) ≥ 0.2 for r² ≤ 2, the 3×3 block at the peak; dilated by 3×3: a 5×5 block.
    assert set(np.unique(weights)) == {1.0, 11.0}
    assert (weights == 11).sum() == 25
    assert (weights[0, 5:10, 6:11, 0] == 11).all()
    np.testing.assert_array_equal(weights, np_weight_map(heat))


@pytest.mark.parametrize("x, y, expected", [(0, 0, 9), (0, 7, 15), (15, 15, 9), (7, 15, 15)])
def test_weight_map_edges_like_scipy(x, y, expected):
    heat = gaussian(16, x, y)[None, :, :, None]
    weights = np.asarray(loss_weight_map(jnp.asarray(heat, jnp.float32)))
    assert (weights == 11).sum() == expected
    np.testing.assert_array_equal(weights, np_weight_map(heat))


def test_weight_map_channels_independent():
    heat = np.stack([gaussian(16, 3, 4), gaussian(16, 11, 12)], axis=-1)[None]
    weights = np.asarray(loss_weight_map(jnp.asarray(heat, jnp.float32)))
    for c in range(2):
        alone = np.asarray(loss_weight_map(jnp.asarray(heat[..., c:c + 1], jnp.float32)))
        np.testing.assert_array_equal(weights[..., c:c + 1], alone)
    assert (weights[0, 2:7, 1:6, 0] == 11).all() and (weights[0, 2:7, 1:6, 1] == 1).all()
    assert (weights[0, 10:15, 9:14, 1] == 11).all() and (weights[0, 10:15, 9:14, 0] == 1).all()


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("threshold", [-0.5, 0.0, 0.2, 0.7])
def test_weight_map_matches_scipy_on_random_maps(kernel_size, threshold):
    # Signed values so that the zero padding outside the map matters at every threshold.
    rng = np.random.default_rng(kernel_size * 10 + int(threshold * 10))
    heat = rng.uniform(-1, 1, size=(2, 9, 7, 3)).astype(np.float32)
    weights = loss_weight_map(jnp.asarray(heat), weight=4.0, threshold=threshold,
                              kernel_size=kernel_size)
    np.testing.assert_array_equal(
        weights, np_weight_map(heat, weight=4.0, threshold=threshold, kernel_size=kernel_size))


@pytest.mark.parametrize("threshold", [0.2, 0.35, 0.5, 0.9])
def test_weight_map_counts_values_equal_to_a_non_zero_threshold(threshold):
    """M = 1 where the dilated map is >= the threshold: a map made of a few levels, one of them the
    threshold itself (as a float32, like the map), so '>' and '>=' differ on many pixels."""
    levels = np.array([0.0, 0.2, 0.35, 0.5, 0.9], np.float32)
    rng = np.random.default_rng(int(threshold * 100))
    heat = levels[rng.integers(0, len(levels), size=(2, 9, 7, 3))]
    heat[heat > threshold] = 0.0  # nothing above: the threshold's own level decides
    weights = np.asarray(loss_weight_map(jnp.asarray(heat), threshold=threshold))
    expected = np_weight_map(heat, threshold=np.float32(threshold))  # compared as float32
    np.testing.assert_array_equal(weights, expected)
    on_level = expected > 1
    assert on_level.sum() > 20 and not on_level.all()
    single = np.zeros((1, 5, 5, 1), np.float32)
    single[0, 2, 2, 0] = np.float32(threshold)
    assert (np.asarray(loss_weight_map(jnp.asarray(single), threshold=threshold)) == 11).sum() == 9


def test_weight_map_threshold_and_kernel_size():
    heat = gaussian(16, 8, 8)[None, :, :, None]

    def count(**kw):
        return int((np.asarray(loss_weight_map(jnp.asarray(heat), **kw)) > 1).sum())

    assert count(threshold=0.5) == 21          # r² ≤ 1 (a plus of 5 pixels), dilated by 3×3
    assert count(threshold=0.99) == 9          # the peak only
    assert count(kernel_size=5) == 49          # 3×3 block dilated by 5×5
    assert count(kernel_size=1) == 9           # no dilation
    assert count(threshold=1.01) == 0


def test_weight_map_passes_no_gradient():
    heat = jnp.asarray(gaussian(8, 4, 4)[None, :, :, None], jnp.float32)
    assert not jnp.any(jax.grad(lambda t: loss_weight_map(t).sum())(heat))
    grad = jax.grad(lambda t: (loss_weight_map(t) * t).sum())(heat)
    np.testing.assert_array_equal(grad, loss_weight_map(heat))


# ---- heatmap_loss ------------------------------------------------------------------------------

def random_batch(seed, stacks=3, shape=(2, 8, 8, 4)):
    rng = np.random.default_rng(seed)
    target = np.where(rng.uniform(size=shape) < 0.3, rng.uniform(size=shape), 0.0)
    preds = [target + rng.normal(scale=0.4, size=shape) for _ in range(stacks)]
    return [p.astype(np.float32) for p in preds], target.astype(np.float32)


def np_heatmap_loss(preds, target, kind, use_weight_map=True, mask=None, weight_kw=None,
                    **loss_kw):
    preds, target = [np.asarray(p, np.float64) for p in preds], np.asarray(target, np.float64)
    weights = np_weight_map(target, **(weight_kw or {})) if use_weight_map else 1.0
    m = np.broadcast_to(np.ones(()) if mask is None else np.asarray(mask, np.float64),
                        target.shape)
    per_stack = [np.sum(NP_LOSSES[kind](target, p, **loss_kw) * weights * m) / m.sum()
                 for p in preds]
    return sum(per_stack)


LOSS_KWARGS = {"awing": {}, "wing": dict(w=1.0, epsilon=0.5), "l2": {}, "l1": {},
               "smooth_l1": dict(beta=0.3)}


@pytest.mark.parametrize("use_weight_map", [True, False])
@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_heatmap_loss_matches_numpy(kind, use_weight_map):
    preds, target = random_batch(0)
    kw = LOSS_KWARGS[kind]
    got = heatmap_loss([jnp.asarray(p) for p in preds], jnp.asarray(target), kind=kind,
                       use_weight_map=use_weight_map, **kw)
    assert got.dtype == jnp.float32 and got.shape == ()
    expected = np_heatmap_loss(preds, target, kind, use_weight_map=use_weight_map, **kw)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_heatmap_loss_splits_weight_map_and_loss_kwargs():
    preds, target = random_batch(1)
    weight_kw = dict(weight=5.0, threshold=0.5, kernel_size=5)
    got = heatmap_loss(preds, target, kind="awing", theta=0.3, alpha=2.4, **weight_kw)
    expected = np_heatmap_loss(preds, target, "awing", weight_kw=weight_kw, theta=0.3, alpha=2.4)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # Map options are accepted (and unused) when the map is off, so ablation configs can keep them.
    off = heatmap_loss(preds, target, kind="l2", use_weight_map=False, **weight_kw)
    assert float(off) == pytest.approx(np_heatmap_loss(preds, target, "l2", False), rel=1e-5)


@pytest.mark.parametrize("mask_shape", [(2, 1, 1, 4), (4,)])
def test_heatmap_loss_mask(mask_shape):
    preds, target = random_batch(2)
    mask = np.ones(mask_shape, np.float32)
    if len(mask_shape) == 4:
        mask[0, ..., 1] = 0
        hidden = (0, slice(None), slice(None), 1)
    else:
        mask[1] = 0
        hidden = (slice(None), slice(None), slice(None), 1)
    got = heatmap_loss(preds, target, mask=mask)
    expected = np_heatmap_loss(preds, target, "awing", mask=mask)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # A masked landmark's prediction does not matter at all.
    changed = [p.copy() for p in preds]
    for p in changed:
        p[hidden] += 5.0
    assert float(heatmap_loss(changed, target, mask=mask)) == float(got)
    grads = jax.grad(lambda ps: heatmap_loss(ps, target, mask=mask))([jnp.asarray(p)
                                                                      for p in preds])
    assert all(not np.any(np.asarray(g)[hidden]) for g in grads)
    assert float(heatmap_loss(preds, target, mask=np.zeros(mask_shape))) == 0.0


def test_heatmap_loss_sums_equally_weighted_stacks():
    preds, target = random_batch(3, stacks=2)
    one = [float(heatmap_loss([p], target)) for p in preds]
    assert float(heatmap_loss(preds, target)) == pytest.approx(sum(one), rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_heatmap_loss_jit_and_grad(kind, dtype):
    preds, target = random_batch(4, stacks=2)
    preds = [jnp.asarray(p, dtype) for p in preds]
    target = jnp.asarray(target, dtype)
    preds[0] = preds[0].at[0, 3, 3, 0].set(target[0, 3, 3, 0])  # one element at zero error
    loss = functools.partial(heatmap_loss, kind=kind, **LOSS_KWARGS[kind])
    eager = loss(preds, target)
    jitted_loss = jax.jit(loss)(preds, target)
    assert jitted_loss.dtype == jnp.float32
    assert float(jitted_loss) == pytest.approx(float(eager), rel=1e-5)
    grads = jax.jit(jax.grad(loss))(preds, target)
    for g in grads:
        assert g.dtype == dtype and g.shape == target.shape
        assert np.isfinite(np.asarray(g, np.float32)).all() and np.any(np.asarray(g, np.float32))


def test_heatmap_loss_rejects_bad_input():
    preds, target = random_batch(5, stacks=1)
    with pytest.raises(ValueError, match=r"awing.*l1.*l2.*smooth_l1.*wing"):
        heatmap_loss(preds, target, kind="mse")
    with pytest.raises(ValueError, match="shape"):
        heatmap_loss([preds[0][:, :4]], target)
    with pytest.raises(ValueError, match="stack"):
        heatmap_loss([], target)
