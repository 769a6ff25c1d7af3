"""Pose-based data balancing: Procrustes against closed forms, balancing of a known yaw skew."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awing_jax import pose_balancing as pdb


def similarity(points, scale, theta, translation):
    c, s = np.cos(theta), np.sin(theta)
    return scale * points @ np.array([[c, s], [-s, c]]) + translation


def test_exact_similarity_is_recovered():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(12, 2))
    scale, theta, translation = 0.37, -2.4, np.array([5.0, -3.0])
    # shape = inverse transform of the reference, so aligning it must apply (scale, theta, t).
    c, s = np.cos(theta), np.sin(theta)
    shape = ((reference - translation) @ np.array([[c, -s], [s, c]])) / scale
    aligned, got_scale, got_theta, got_translation = pdb.similarity_align(shape, reference)
    np.testing.assert_allclose(aligned, reference, atol=1e-12)
    np.testing.assert_allclose(similarity(shape, scale, theta, translation), reference, atol=1e-12)
    assert got_scale == pytest.approx(scale, rel=1e-12)
    assert got_theta == pytest.approx(theta, abs=1e-12)
    np.testing.assert_allclose(got_translation, translation, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_rotation_is_the_least_squares_optimum(seed):
    """For unrelated shapes the closed-form angle beats every angle of a fine grid, and the scale
    is the 1-D least-squares optimum at that angle."""
    rng = np.random.default_rng(seed)
    shape, reference = rng.normal(size=(2, 8, 2))
    aligned, scale, theta, _ = pdb.similarity_align(shape, reference)
    a, b = shape - shape.mean(0), reference - reference.mean(0)

    def residual(angle, k):
        return np.sum((similarity(a, k, angle, 0.0) - b) ** 2)

    grid = np.linspace(-np.pi, np.pi, 20001)[:, None, None]
    rotated = np.stack([np.cos(grid) * a[:, 0] - np.sin(grid) * a[:, 1],
                        np.sin(grid) * a[:, 0] + np.cos(grid) * a[:, 1]], axis=-1)[:, 0]
    k = np.sum(rotated * b, axis=(1, 2)) / np.sum(a**2)
    best = np.min(np.sum((k[:, None, None] * rotated - b) ** 2, axis=(1, 2)))
    assert residual(theta, scale) <= best + 1e-9
    rotated = similarity(a, 1.0, theta, 0.0)
    assert scale == pytest.approx(np.sum(rotated * b) / np.sum(a**2), rel=1e-9)
    np.testing.assert_allclose(np.sum((aligned - reference) ** 2), residual(theta, scale),
                               rtol=1e-9, atol=1e-12)


def test_no_reflection():
    """A mirrored shape cannot be fitted exactly: the alignment is a proper rotation."""
    reference = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.5, 3.0]])
    mirrored = reference * [-1.0, 1.0]
    aligned, scale, _, _ = pdb.similarity_align(mirrored, reference)
    assert scale > 0
    assert np.sum((aligned - reference) ** 2) > 0.5


def test_invisible_points_take_no_part():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(10, 2))
    shape = similarity(reference, 2.0, 0.3, [1.0, 2.0])
    visible = np.ones(10, bool)
    visible[[2, 7]] = False
    shape[[2, 7]] += 100.0  # garbage where not annotated
    aligned, *_ = pdb.similarity_align(reference, shape, visible)
    np.testing.assert_allclose(aligned[visible], shape[visible], atol=1e-12)


def test_generalised_procrustes_of_similar_shapes_is_one_shape():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(15, 2))
    shapes = np.stack([similarity(base, rng.uniform(0.5, 3), rng.uniform(-3, 3),
                                  rng.normal(size=2) * 50) for _ in range(20)])
    aligned, mean = pdb.generalised_procrustes(shapes)
    np.testing.assert_allclose(aligned, np.broadcast_to(mean, aligned.shape), atol=1e-9)
    np.testing.assert_allclose(mean.mean(0), 0.0, atol=1e-12)
    assert np.linalg.norm(mean) == pytest.approx(1.0)
    centred = base - base.mean(0)
    assert pdb.similarity_align(centred / np.linalg.norm(centred), mean)[1] == pytest.approx(1.0)


def test_replication_factors_equalise_the_histogram():
    """Within each bin, count * round(max / count) is within count / 2 of the fullest bin."""
    rng = np.random.default_rng(3)
    values = rng.gamma(2.0, size=2000)
    factors = pdb.replication_factors(values, num_bins=9)
    edges = np.linspace(values.min(), values.max(), 10)
    bins = np.clip(np.digitize(values, edges) - 1, 0, 8)
    counts = np.bincount(bins, minlength=9)
    for b in np.flatnonzero(counts):
        assert np.all(factors[bins == b] == factors[bins == b][0])
        assert abs(counts[b] * factors[bins == b][0] - counts.max()) <= counts[b] / 2
    assert factors[bins == np.argmax(counts)].max() == 1
    np.testing.assert_array_equal(pdb.replication_factors([0.0, 1.0, 1.0, 1.0], num_bins=2),
                                  [3, 1, 1, 1])


# A 3-D face: jaw contour on the head's rim (depth 0), inner features in front of it.
_JAW = np.linspace(0.0, np.pi, 9)
TEMPLATE = np.concatenate([
    np.stack([-np.cos(_JAW), 0.2 + 0.9 * np.sin(_JAW), 0.0 * _JAW], axis=-1),
    [[-0.6, -0.5, 0.5], [-0.3, -0.55, 0.6], [0.3, -0.55, 0.6], [0.6, -0.5, 0.5]],    # brows
    [[-0.55, -0.3, 0.5], [-0.25, -0.3, 0.55], [0.25, -0.3, 0.55], [0.55, -0.3, 0.5]],  # eyes
    [[0, -0.25, 0.7], [0, 0, 0.85], [0, 0.2, 0.95], [-0.15, 0.3, 0.75], [0.15, 0.3, 0.75]],
    [[-0.35, 0.6, 0.6], [0, 0.55, 0.7], [0.35, 0.6, 0.6], [0, 0.7, 0.68]],             # mouth
])


def synthetic_shapes(n, seed):
    """Shapes of the template turned by a skewed yaw (mostly frontal, few profiles), projected
    orthographically (x -> x cos(yaw) + z sin(yaw): foreshortening and parallax), under a random
    similarity and with 1% noise. Returns (shapes (n, L, 2), yaw (n,) degrees)."""
    rng = np.random.default_rng(seed)
    yaw = np.where(rng.random(n) < 0.85, rng.normal(0.0, 10.0, n), rng.uniform(-45, 45, n))
    yaw = np.clip(yaw, -45.0, 45.0)
    r = np.deg2rad(yaw)[:, None]
    x = TEMPLATE[:, 0] * np.cos(r) + TEMPLATE[:, 2] * np.sin(r)
    points = np.stack([x, np.broadcast_to(TEMPLATE[:, 1], x.shape)], axis=-1)
    scale = rng.uniform(50, 150, n)
    shapes = np.stack([similarity(p, k, t, rng.uniform(-200, 200, 2))
                       for p, k, t in zip(points, scale, rng.uniform(-np.pi, np.pi, n),
                                          strict=True)])
    return shapes + rng.normal(0.0, 0.01, shapes.shape) * scale[:, None, None], yaw


@pytest.mark.parametrize("seed", [0, 1])
def test_balancing_flattens_a_skewed_yaw_distribution(seed):
    """Binned by the true yaw (9 equal bins over its range), the raw counts are skewed by more
    than 10x while counts x PDB weights lie within 30% of their mean (rounding of the replication
    factors alone allows up to count / 2 per bin) and their max/min is below 1.7."""
    shapes, yaw = synthetic_shapes(3000, seed)
    weights = pdb.pdb_weights(shapes)
    assert weights.dtype.kind == "i" and weights.min() == 1 and weights.shape == (3000,)
    edges = np.linspace(yaw.min(), yaw.max(), 10)
    raw, _ = np.histogram(yaw, edges)
    balanced, _ = np.histogram(yaw, edges, weights=weights)
    assert raw.max() / raw.min() > 10
    assert balanced.max() / balanced.min() < 1.7
    np.testing.assert_array_less(np.abs(balanced / balanced.mean() - 1), 0.3)
    # Component 0 tracks yaw; the projection is invariant to the similarity transforms.
    assert abs(np.corrcoef(pdb.principal_projections(shapes), yaw)[0, 1]) > 0.99


def test_missing_points_are_tolerated():
    shapes, yaw = synthetic_shapes(600, 4)
    visible = np.random.default_rng(5).random(shapes.shape[:2]) > 0.1
    garbage = np.where(visible[..., None], shapes, 1e4)
    projection = pdb.principal_projections(garbage, visible)
    assert abs(np.corrcoef(projection, yaw)[0, 1]) > 0.95


def test_default_component_per_scheme():
    assert pdb.default_component("aflw19") == 1
    assert pdb.default_component("wflw") == pdb.default_component("300w") == 0


def test_trainer_balances_stored_poses(tmp_path):
    """On synthetic_faces (yaw ~ N(0, 20 deg)) the weights from the stored landmarks, read
    without decoding images, favour the rare large yaws the builder recorded."""
    from awing_jax import input_pipeline, trainer
    from configs import tiny
    from datasets import build

    build.build("synthetic_faces", data_dir=str(tmp_path), num_train=300, num_test=0,
                image_size=64)
    config = tiny.get_config()
    config.data_dir = str(tmp_path)
    source = input_pipeline.data_source("synthetic_faces", "train", str(tmp_path))
    weights = trainer.pose_balancing_weights(source, config)
    yaw = np.abs([source[i]["pose"][0] for i in range(len(source))])
    assert weights.shape == (300,) and weights.min() == 1
    assert weights[yaw > 30].mean() > 3 * weights[yaw < 10].mean()
