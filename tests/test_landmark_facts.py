"""The landmark tables against the datasets' own point definitions (tests/_landmark_facts.py).

Nothing there is read from :mod:`awing_jax.landmarks`: the mirror pairs, the boundary curves with
each curve's point order, the normalising points and the real-looking mean shapes are typed in
from the definitions of each annotation scheme.

On top of the exact tables, geometry on those shapes: mirroring a face and re-ordering it by the
flip permutation must put every label back on its own feature (the left eye's outer corner on the
left eye's outer corner, never on a neighbour), and every boundary curve must run along its
feature without doubling back.
"""

import numpy as np
import pytest

from awing_jax.landmarks import SCHEMES, flip_landmarks
from tests._landmark_facts import FACTS, NAMES, pairs_to_permutation


def test_every_scheme_is_pinned():
    assert set(SCHEMES) == set(FACTS)
    for name, (num, *_, mean) in FACTS.items():
        assert SCHEMES[name].num_landmarks == num == len(mean)


@pytest.mark.parametrize("name", NAMES)
def test_flip_permutation_is_the_published_pairing(name):
    num, pairs, *_ = FACTS[name]
    assert SCHEMES[name].flip_permutation == pairs_to_permutation(num, pairs)


def _canonical(curve):
    """A curve as the point sequence it traces, whichever end it is listed from."""
    curve = tuple(curve)
    return min(curve, curve[::-1])


@pytest.mark.parametrize("name", NAMES)
def test_boundary_curves_are_the_published_curves_in_point_order(name):
    _, _, curves, *_ = FACTS[name]
    table = SCHEMES[name].boundary_groups
    assert len(table) == len(curves)
    assert sorted(map(_canonical, table)) == sorted(map(_canonical, curves))


@pytest.mark.parametrize("name", NAMES)
def test_normalising_points_are_the_published_ones(name):
    _, _, _, norms, _ = FACTS[name]
    table = SCHEMES[name].normalisation
    for norm, groups in norms.items():
        assert tuple(map(tuple, table[norm])) == groups, norm


# ------------------------------------------------------------------------------- geometry


def _in_image(mean, width=200.0, seed=0):
    """The mean shape placed in a ``width``-pixel image, with a little annotation noise."""
    noise = np.random.default_rng(seed).normal(scale=0.002, size=mean.shape)
    return (mean + noise) * 120.0 + [width / 2 - 0.5 + 3.0, 90.0]  # slightly off-centre


@pytest.mark.parametrize("name", NAMES)
def test_mean_shapes_are_faces(name):
    """The shapes the geometry tests stand on: distinct points, partners mirror images."""
    mean = FACTS[name][4]
    gaps = np.linalg.norm(mean[:, None] - mean[None], axis=-1) + np.eye(len(mean))
    assert gaps.min() > 0.02
    num, pairs, *_ = FACTS[name]
    for a, b in pairs:
        assert abs(mean[a, 0]) > 0.04, (a, b)
        np.testing.assert_allclose(mean[a] * [-1, 1], mean[b], atol=1e-9)
    midline = set(range(num)) - {i for pair in pairs for i in pair}
    assert all(mean[i, 0] == 0 for i in midline)


@pytest.mark.parametrize("name", NAMES)
def test_mirrored_face_puts_every_label_back_on_its_feature(name):
    """Mirror a face and re-order it by the table: each point lands next to its own label's point
    of the unmirrored face (closer than to any other point), and left stays left."""
    width = 200.0
    face = _in_image(FACTS[name][4], width)
    flipped = flip_landmarks(face, width, name)
    centre_x = (width - 1) / 2 + 3.0  # the face's midline in the image
    # Mirroring about the image centre moves the face 6 px; put the midline back.
    flipped = flipped + np.array([2 * 3.0, 0.0])
    distance = np.linalg.norm(flipped[:, None] - face[None], axis=-1)
    nearest = distance.argmin(axis=1)
    wrong = np.flatnonzero(nearest != np.arange(len(face)))
    landed = dict(zip(wrong.tolist(), nearest[wrong].tolist(), strict=True))
    assert not wrong.size, f"label -> the point it lands on: {landed}"
    side = np.sign(FACTS[name][4][:, 0])  # -1 left, 0 midline, +1 right
    off_midline = side != 0
    np.testing.assert_array_equal(np.sign(flipped[off_midline, 0] - centre_x), side[off_midline])
    assert np.all(np.abs(flipped[~off_midline, 0] - centre_x) < 2.0)


@pytest.mark.parametrize("name", NAMES)
def test_boundary_curves_run_along_their_features_without_doubling_back(name):
    """Consecutive steps along every curve turn by less than 90 degrees: a point out of order
    makes the curve reverse or zig-zag across its feature."""
    face = FACTS[name][4]
    for curve in SCHEMES[name].boundary_groups:
        points = face[list(curve)]
        steps = np.diff(points, axis=0)
        assert np.all(np.linalg.norm(steps, axis=1) > 0), curve
        turns = np.sum(steps[1:] * steps[:-1], axis=1)
        assert np.all(turns > 0), f"curve {curve} doubles back"


@pytest.mark.parametrize("name", NAMES)
def test_flip_maps_each_curve_onto_its_mirror_curve_point_by_point(name):
    """Left lid onto right lid with the corners matched, the cheek onto itself reversed."""
    s = SCHEMES[name]
    perm = s.flip_permutation
    curves = {_canonical(c) for c in s.boundary_groups}
    for curve in s.boundary_groups:
        assert _canonical(perm[i] for i in curve) in curves, curve


def test_synthetic_faces_template_follows_the_300w_definition():
    """The demo data's mean face (built with the 300W table) is mirror-symmetric under the
    published pairs and puts every point on its defined side and feature."""
    from datasets.synthetic_faces.render import TEMPLATE

    num, pairs, *_, mean = FACTS["300w"]
    template = np.asarray(TEMPLATE)[:, :2]
    mirrored = template[list(pairs_to_permutation(num, pairs))] * [-1.0, 1.0]
    np.testing.assert_allclose(mirrored, template, atol=1e-9)
    np.testing.assert_array_equal(np.sign(np.round(template[:, 0], 9)), np.sign(mean[:, 0]))
    # Within a few hundredths of a face width of the typed-in mean face, point by point.
    assert np.abs(template - mean).max() < 0.04
