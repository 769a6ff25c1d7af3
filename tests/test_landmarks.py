"""Tests of the landmark scheme table and the horizontal flip."""

import jax.numpy as jnp
import numpy as np
import pytest

from awing_jax.landmarks import SCHEMES, flip_landmarks, get_scheme

WIDTH = 256
ALL_SCHEMES = sorted(SCHEMES)


@pytest.mark.parametrize("name", ALL_SCHEMES)
def test_flip_permutation_is_an_involution(name):
    perm = np.asarray(SCHEMES[name].flip_permutation)
    np.testing.assert_array_equal(perm[perm], np.arange(len(perm)))


@pytest.mark.parametrize("name", ALL_SCHEMES)
def test_flip_twice_is_identity(name):
    rng = np.random.default_rng(0)
    points = rng.uniform(0, WIDTH - 1, (3, SCHEMES[name].num_landmarks, 2))
    np.testing.assert_allclose(flip_landmarks(flip_landmarks(points, WIDTH, name), WIDTH, name),
                               points)
    as_jax = flip_landmarks(flip_landmarks(jnp.asarray(points), WIDTH, name), WIDTH, name)
    assert isinstance(as_jax, jnp.ndarray)
    np.testing.assert_allclose(as_jax, points, atol=1e-4)


@pytest.mark.parametrize("name", ALL_SCHEMES)
def test_flip_swaps_left_and_right_normalising_points(name):
    """Flipping a face puts the mirrored right eye where the left eye was, and so on."""
    s = SCHEMES[name]
    rng = np.random.default_rng(1)
    points = rng.uniform(0, WIDTH - 1, (s.num_landmarks, 2))
    flipped = flip_landmarks(points, WIDTH, s)
    for group_a, group_b in s.normalisation.values():
        for source, target in ((group_a, group_b), (group_b, group_a)):
            expected = points[list(source)].mean(0) * [-1, 1] + [WIDTH - 1, 0]
            np.testing.assert_allclose(flipped[list(target)].mean(0), expected)


@pytest.mark.parametrize("name", ALL_SCHEMES)
def test_flip_maps_boundary_curves_onto_boundary_curves(name):
    """Left brow <-> right brow, cheek <-> cheek: two tables of the scheme must agree."""
    s = SCHEMES[name]
    curves = {frozenset(group) for group in s.boundary_groups}
    for group in s.boundary_groups:
        assert frozenset(s.flip_permutation[i] for i in group) in curves


@pytest.mark.parametrize("name", ALL_SCHEMES)
def test_symmetric_shape_is_unchanged_by_flip(name):
    """A face symmetric about the image's vertical axis: each point mirrors its flip partner."""
    s = SCHEMES[name]
    perm = np.asarray(s.flip_permutation)
    rng = np.random.default_rng(2)
    shape = rng.uniform(0, WIDTH - 1, (s.num_landmarks, 2))
    centre = (WIDTH - 1) / 2
    for i, j in enumerate(perm):
        if i == j:
            shape[i, 0] = centre
        elif i < j:
            shape[j] = [2 * centre - shape[i, 0], shape[i, 1]]
    np.testing.assert_allclose(flip_landmarks(shape, WIDTH, s), shape)


def test_flip_uses_pixel_centre_convention_and_checks_landmark_count():
    s = get_scheme(19)
    points = np.zeros((s.num_landmarks, 2))
    points[s.flip_permutation[0]] = [0.0, 7.0]
    assert flip_landmarks(points, 10, s)[0].tolist() == [9.0, 7.0]
    with pytest.raises(ValueError, match="19"):
        flip_landmarks(np.zeros((18, 2)), 10, s)
