"""Flip-test inference checked with oracle models whose outputs are known.

An oracle "sees" a face whose landmarks it knows: its heatmaps are Gaussians rendered at those
landmarks (plus a bias it may have), or for a coordinate regressor the landmarks themselves. An
asymmetric marker pixel tells it whether the image it gets is the original or its mirror image;
for the mirror image it reports the mirrored face, re-labelled by the pairs of
tests/_landmark_facts.py (left eye's corner is now the right eye's corner), not by the tables of
awing_jax.landmarks. Such an oracle is exactly mirror-equivariant, so:

- without bias, the flip test must return what the plain prediction returns (the landmarks);
- with a bias of (bx, by) pixels, the plain prediction is off by (bx, by), while the flip test
  averages it with the mirrored prediction, off by (-bx, by) once mapped back: the horizontal
  bias cancels and the vertical one stays.
"""

import sys

import jax.numpy as jnp
import numpy as np
import pytest

from awing_jax import evaluation, inference, models
from awing_jax.targets import render_heatmaps
from configs import tiny
from tests._landmark_facts import FACTS, NAMES, pairs_to_permutation

SIZE = 64           # input pixels; heatmaps 16 x 16
SIGMA = 1.5         # the oracle's Gaussians, heatmap pixels
BATCH = 2


def _permutation(scheme):
    num, pairs, *_ = FACTS[scheme]
    return np.asarray(pairs_to_permutation(num, pairs))


def _mirror(points, scheme):
    """Mirror image of (B, L, 2) crop landmarks, re-labelled by the published pairs."""
    out = np.asarray(points)[:, _permutation(scheme)].copy()
    out[..., 0] = SIZE - 1 - out[..., 0]
    return out


def _faces(scheme, seed=0):
    """(B, L, 2) asymmetric faces in the crop: the mean face shifted, scaled and jittered."""
    rng = np.random.default_rng(seed)
    mean = FACTS[scheme][4]
    faces = [mean * rng.uniform(34, 40) + [SIZE / 2 - 0.5 + rng.uniform(-4, 4), 27.0]
             + rng.normal(scale=1.0, size=mean.shape) for _ in range(BATCH)]
    return np.stack(faces).astype(np.float32)


def _images():
    """Blank crops with a marker in the top-left corner: mirrored, it is in the top-right."""
    images = np.zeros((BATCH, SIZE, SIZE, 3), np.uint8)
    images[:, 0, 0] = 255
    return images


def _heatmaps(points):
    """(B, H, W, L + 1): a Gaussian per landmark, and in the last ("boundary") channel one at the
    left eye's outer corner, which the boundary channel's unflip must mirror without re-labelling
    (the real curves would do as well, at many times the compile time)."""
    heat = render_heatmaps(points, jnp.ones(points.shape[:2], bool), heatmap_size=SIZE // 4,
                           sigma=SIGMA)
    return jnp.concatenate([heat, heat[..., :1]], axis=-1)


class HeatmapOracle:
    """Stands in for a FAN: ``variables`` carry the true landmarks, the bias and the mirrored
    face's landmarks; the output is one stack of heatmaps."""

    dtype = jnp.float32
    boundary = True
    heatmap_stride = SIZE // 16

    def apply(self, variables, x, train):
        assert not train
        original = (x[:, 0, 0, 0] > x[:, 0, -1, 0])[:, None, None]
        seen = jnp.where(original, variables["landmarks"], variables["mirrored"])
        return [_heatmaps(seen + variables["bias"])]


class CoordinateOracle:
    """Stands in for a coordinate regressor: outputs (B, L, 2) landmarks."""

    dtype = jnp.float32

    def apply(self, variables, x, train):
        original = (x[:, 0, 0, 0] > x[:, 0, -1, 0])[:, None, None]
        seen = jnp.where(original, variables["landmarks"], variables["mirrored"])
        return seen + variables["bias"]


def _use_oracle(patch, oracle):
    """Makes every awing_jax module that builds models from a config build ``oracle``."""
    original = models.create_model
    for name, module in list(sys.modules.items()):
        if name.startswith("awing_jax") and getattr(module, "create_model", None) is original:
            patch.setattr(module, "create_model", lambda config, **kwargs: oracle)


def _config(scheme, model="fan"):
    config = tiny.get_config()
    config.scheme = scheme
    config.input_size = SIZE
    config.model.name = model
    config.model.boundary = True
    config.decoder = "subpixel"
    return config


@pytest.fixture(scope="module", params=["300w", "wflw"])
def heatmap_inference(request):
    """(scheme, plain, flip-test) inference functions of the heatmap oracle, each compiled once."""
    scheme = request.param
    patch = pytest.MonkeyPatch()
    _use_oracle(patch, HeatmapOracle())
    config = _config(scheme)
    plain = evaluation.make_inference_fn(config, flip_test=False)
    flipped = evaluation.make_inference_fn(config, flip_test=True)
    patch.undo()
    return scheme, plain, flipped


def _variables(scheme, bias):
    faces = _faces(scheme)
    return faces, {"landmarks": faces, "mirrored": _mirror(faces, scheme),
                   "bias": np.asarray(bias, np.float32)}


def test_heatmap_oracle_without_bias_flip_test_changes_nothing(heatmap_inference):
    scheme, plain, flipped = heatmap_inference
    faces, variables = _variables(scheme, (0.0, 0.0))
    without = np.asarray(plain(variables, _images()))
    with_flip = np.asarray(flipped(variables, _images()))
    np.testing.assert_allclose(without, faces, atol=0.02)  # a Gaussian decodes exactly
    np.testing.assert_allclose(with_flip, without, atol=0.02)


def test_heatmap_oracle_flip_test_cancels_horizontal_bias_only(heatmap_inference):
    scheme, plain, flipped = heatmap_inference
    bias = np.array([2.0, 1.0])  # input pixels: half a heatmap pixel right, a quarter down
    faces, variables = _variables(scheme, bias)
    without = np.asarray(plain(variables, _images()))
    with_flip = np.asarray(flipped(variables, _images()))
    np.testing.assert_allclose(without, faces + bias, atol=0.02)
    # The mean of two Gaussians 4 px apart, decoded: the midpoint, to a small fraction of the bias.
    np.testing.assert_allclose(with_flip, faces + np.array([0.0, bias[1]]), atol=0.15)


@pytest.mark.parametrize("scheme", NAMES)
def test_coordinate_oracle_flip_test_cancels_horizontal_bias_only(scheme, monkeypatch):
    _use_oracle(monkeypatch, CoordinateOracle())
    config = _config(scheme, model="cnn6")
    bias = np.array([3.0, -2.0])
    faces, variables = _variables(scheme, bias)
    without = np.asarray(evaluation.make_inference_fn(config)(variables, _images()))
    with_flip = np.asarray(
        evaluation.make_inference_fn(config, flip_test=True)(variables, _images()))
    np.testing.assert_allclose(without, faces + bias, atol=1e-4)
    np.testing.assert_allclose(with_flip, faces + np.array([0.0, bias[1]]), atol=1e-4)


@pytest.mark.parametrize("scheme", NAMES)
def test_unflip_heatmaps_maps_the_mirror_images_heatmaps_onto_the_image(scheme):
    """Heatmaps rendered for the mirrored face, unflipped, are the heatmaps of the face: every
    landmark channel, and the boundary channel mirrored in place."""
    faces = _faces(scheme, seed=3)
    mirrored = _heatmaps(_mirror(faces, scheme))
    expected = np.asarray(_heatmaps(faces))
    # The boundary channel of the mirror image is the mirror image of the face's.
    mirrored = mirrored.at[..., -1].set(expected[:, :, ::-1, -1])
    unflipped = inference.unflip_heatmaps(mirrored, scheme, boundary=True)
    np.testing.assert_allclose(np.asarray(unflipped), expected, atol=1e-6)
    without_boundary = inference.unflip_heatmaps(mirrored[..., :-1], scheme, boundary=False)
    np.testing.assert_allclose(np.asarray(without_boundary), expected[..., :-1], atol=1e-6)
