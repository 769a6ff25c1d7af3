"""Tests of NME, failure rate, CED and AUC: hand computations, closed forms and invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awing_jax.landmarks import SCHEMES, LandmarkScheme
from awing_jax.metrics import auc, ced_curve, failure_rate, nme

# Four points: two "eyes" (0, 1) and two points below them (2, 3).
TINY = LandmarkScheme(
    name="tiny",
    num_landmarks=4,
    flip_permutation=(1, 0, 3, 2),
    boundary_groups=((0, 1),),
    normalisation={"inter_ocular": ((0,), (1,)), "eye_centers": ((0, 2), (1, 3))},
    default_norm="inter_ocular",
)
GT = np.array([[[0.0, 0.0], [4.0, 0.0], [0.0, 2.0], [4.0, 4.0]]])
# Errors per point: 5 (3-4-5 triangle), 0, 1, 2.
PRED = GT + np.array([[[3.0, 4.0], [0.0, 0.0], [1.0, 0.0], [0.0, -2.0]]])


def test_nme_hand_computed():
    np.testing.assert_allclose(nme(PRED, GT, scheme=TINY, norm="inter_ocular"), [2.0 / 4.0])
    # Centres (0, 1) and (4, 2).
    np.testing.assert_allclose(nme(PRED, GT, scheme=TINY, norm="eye_centers"), [2.0 / np.sqrt(17)])
    boxes = np.array([[1.0, 1.0, 9.0, 3.0]])  # 8 x 2 -> sqrt(16) = 4
    np.testing.assert_allclose(nme(PRED, GT, scheme=TINY, norm="box", boxes=boxes), [0.5])
    visible = np.array([[True, False, True, True]])
    np.testing.assert_allclose(
        nme(PRED, GT, scheme=TINY, norm="inter_ocular", visible=visible), [(8.0 / 3.0) / 4.0])


def test_nme_follows_the_array_namespace_and_traces_under_jit():
    out = nme(PRED, GT, scheme=TINY)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    boxes = np.array([[1.0, 1.0, 9.0, 3.0]])
    visible = np.array([[True, False, True, True]])
    jitted = jax.jit(lambda p, g, b, v: nme(p, g, scheme=TINY, norm="box", boxes=b, visible=v))
    out = jitted(jnp.asarray(PRED), jnp.asarray(GT), jnp.asarray(boxes), jnp.asarray(visible))
    assert isinstance(out, jax.Array) and out.shape == (1,)
    np.testing.assert_allclose(out, [(8.0 / 3.0) / 4.0], rtol=1e-6)


@pytest.mark.parametrize(
    ("scheme", "norm", "group_a", "group_b"),
    [("wflw", "inter_ocular", [60], [72]), ("300w", "inter_ocular", [36], [45]),
     ("300w", "eye_centers", range(36, 42), range(42, 48)), ("cofw", "inter_pupil", [16], [17]),
     ("cofw", "inter_ocular", [8], [9])],
)
def test_nme_uses_the_papers_normalising_points(scheme, norm, group_a, group_b):
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 256, (3, SCHEMES[scheme].num_landmarks, 2))
    pred = gt + np.array([3.0, -4.0])  # every point off by 5 px
    d = np.linalg.norm(gt[:, list(group_a)].mean(1) - gt[:, list(group_b)].mean(1), axis=-1)
    np.testing.assert_allclose(nme(pred, gt, scheme=scheme, norm=norm), 5.0 / d)


def _similarity(points, angle, scale, shift):
    c, s = np.cos(angle), np.sin(angle)
    return scale * points @ np.array([[c, s], [-s, c]]) + shift


@settings(max_examples=25, deadline=None)
@given(
    scheme=st.sampled_from(sorted(SCHEMES)),
    angle=st.floats(-np.pi, np.pi),
    scale=st.floats(0.05, 20.0),
    shift=st.tuples(st.floats(-500, 500), st.floats(-500, 500)),
    seed=st.integers(0, 2**16),
)
def test_nme_invariant_to_similarity_transforms(scheme, angle, scale, shift, seed):
    rng = np.random.default_rng(seed)
    s = SCHEMES[scheme]
    gt = rng.uniform(0, 256, (2, s.num_landmarks, 2))
    pred = gt + rng.normal(0, 5, gt.shape)
    for norm in s.normalisation:
        before = nme(pred, gt, scheme=s, norm=norm)
        after = nme(_similarity(pred, angle, scale, shift), _similarity(gt, angle, scale, shift),
                    scheme=s, norm=norm)
        np.testing.assert_allclose(after, before, rtol=1e-9)

    # An axis-aligned box only follows scale and translation (a rotated box is no longer one).
    boxes = np.concatenate([gt.min(1), gt.max(1)], axis=-1)
    moved_boxes = scale * boxes + np.tile(shift, 2)
    before = nme(pred, gt, scheme=s, norm="box", boxes=boxes)
    after = nme(_similarity(pred, 0.0, scale, shift), _similarity(gt, 0.0, scale, shift),
                scheme=s, norm="box", boxes=moved_boxes)
    np.testing.assert_allclose(after, before, rtol=1e-9)


def test_nme_errors_are_clear():
    with pytest.raises(ValueError, match=r"inter_ocular.*eye_centers.*box"):
        nme(PRED, GT, scheme=TINY, norm="inter_pupil")
    with pytest.raises(ValueError, match="boxes"):
        nme(PRED, GT, scheme=TINY, norm="box")
    collapsed = GT.copy()
    collapsed[0, 1] = collapsed[0, 0]
    with pytest.raises(ValueError, match="zero"):
        nme(PRED, collapsed, scheme=TINY, norm="inter_ocular")
    with pytest.raises(ValueError, match="zero"):
        nme(PRED, GT, scheme=TINY, norm="box", boxes=np.array([[1.0, 1.0, 1.0, 5.0]]))
    with pytest.raises(ValueError, match="4, 2"):
        nme(PRED[:, :3], GT, scheme=TINY)
    with pytest.raises(ValueError, match="visible"):
        nme(PRED, GT, scheme=TINY, visible=np.zeros((1, 4), bool))


def test_failure_rate_and_auc_hand_computed():
    nmes = [0.02, 0.05, 0.2]
    assert failure_rate(nmes, 0.1) == pytest.approx(1 / 3)
    assert failure_rate(nmes, 0.01) == 1.0
    assert failure_rate(nmes, 0.2) == 0.0  # "exceeds": an NME of exactly 0.2 is no failure at 0.2
    # The CED is a step function: 1/3 on [0.02, 0.05), 2/3 on [0.05, 0.1].
    expected = (1 / 3) * (1 - 0.2) + (1 / 3) * (1 - 0.5)
    assert auc(nmes, 0.1) == pytest.approx(expected, abs=1e-3)
    assert auc(np.zeros(5), 0.1) == pytest.approx(1.0)
    assert auc([0.3, 0.5], 0.1) == 0.0


@settings(max_examples=30, deadline=None)
@given(
    nmes=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=40),
    threshold=st.sampled_from([0.05, 0.08, 0.1]),
)
def test_auc_matches_closed_form_and_ced_is_a_monotone_cdf(nmes, threshold):
    nmes = np.asarray(nmes)
    # Each image contributes the length of [nme, t] to the area: AUC = mean((t - nme)+) / t.
    closed_form = np.mean(np.clip(threshold - nmes, 0, None)) / threshold
    assert auc(nmes, threshold, step=1e-4) == pytest.approx(closed_form, abs=2e-4 / threshold)

    thresholds, fraction = ced_curve(nmes, threshold, step=1e-4)
    assert thresholds[0] == 0.0 and thresholds[-1] == pytest.approx(threshold)
    assert np.all(np.diff(thresholds) > 0) and np.all(np.diff(fraction) >= 0)
    assert fraction[-1] == pytest.approx(1.0 - failure_rate(nmes, threshold))
    np.testing.assert_array_equal(fraction, (nmes[None] <= thresholds[:, None]).mean(axis=1))


def test_empty_nmes_rejected():
    with pytest.raises(ValueError):
        auc([], 0.1)
    with pytest.raises(ValueError):
        failure_rate([], 0.1)
