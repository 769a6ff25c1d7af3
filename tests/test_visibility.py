"""Landmarks marked invisible contribute exactly nothing to the training objectives.

Checked on the objectives the train step calls (:func:`awing_jax.trainer.heatmap_objective` and
:func:`awing_jax.trainer.regression_objective`), for every loss kind, with and without the weight
map and the boundary channel: the prediction for an invisible landmark and its annotated position
leave the loss unchanged to the last bit and get an exactly zero gradient, while the visible ones
do matter; and the objective equals the same objective on the visible landmarks alone.

The boundary channel is drawn through every annotated point of a curve, visible or not (AFLW's
invisible points carry positions, and curves are drawn through them), so with the boundary on the
tests move no invisible point.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from awing_jax import trainer
from awing_jax.landmarks import get_scheme
from awing_jax.losses import COORDINATE_LOSSES, LOSSES
from configs import tiny
from tests._landmark_facts import W300_MEAN

SIZE = 32  # input pixels; heatmaps 8 x 8
HIDDEN = [(0, 36), (0, 8), (1, 45), (1, 60), (1, 0)]  # (image, landmark) pairs marked invisible


def _config(kind, *, weight_map=True, boundary=True, model="fan"):
    config = tiny.get_config()  # 300W scheme
    config.input_size = SIZE
    config.model.name = model
    config.model.boundary = boundary
    config.loss.kind = kind
    config.loss.use_weight_map = weight_map
    config.loss.threshold = 0.3
    return config


def _batch(hidden=HIDDEN, seed=0):
    rng = np.random.default_rng(seed)
    landmarks = np.stack([W300_MEAN * 22 + [15.5, 12.0] + rng.normal(scale=0.7, size=(68, 2))
                          for _ in range(2)]).astype(np.float32)
    visible = np.ones((2, 68), bool)
    for b, l in hidden:
        visible[b, l] = False
    return {"landmarks": landmarks, "visible": visible}


def _outputs(config, seed=1):
    """Two stacks of predictions in the targets' range."""
    rng = np.random.default_rng(seed)
    channels = 68 + config.model.boundary
    return [jnp.asarray(0.3 * rng.random((2, SIZE // 4, SIZE // 4, channels)), jnp.float32)
            for _ in range(2)]


def _heatmap_loss(config):
    scheme = get_scheme(config.scheme)
    loss_and_grad = jax.value_and_grad(
        lambda outputs, batch: trainer.heatmap_objective(outputs, batch, config, scheme))
    # The boundary targets are compiled on their own already; jitting them again costs more.
    return loss_and_grad if config.model.boundary else jax.jit(loss_and_grad)


# Every kind with the weight map; the switches once each (the boundary channel's targets cost a
# compilation of their own).
HEATMAP_CASES = [*[(kind, True, False) for kind in sorted(LOSSES)], ("awing", False, False),
                 ("awing", True, True)]


@pytest.mark.parametrize(("kind", "weight_map", "boundary"), HEATMAP_CASES)
def test_heatmap_objective_ignores_invisible_landmarks(kind, weight_map, boundary):
    config = _config(kind, weight_map=weight_map, boundary=boundary)
    loss_and_grad = _heatmap_loss(config)
    batch, outputs = _batch(), _outputs(config)
    loss, grads = loss_and_grad(outputs, batch)
    assert np.isfinite(loss) and loss > 0

    for g in grads:
        g = np.asarray(g)
        for b, l in HIDDEN:
            assert not np.any(g[b, :, :, l]), f"gradient reaches invisible landmark {l}"
        assert np.abs(g[0, :, :, 37]).max() > 0  # a visible one is trained

    wild = list(outputs)
    for b, l in HIDDEN:
        wild = [o.at[b, :, :, l].set(4.0 - 0.1 * l) for o in wild]
    assert loss_and_grad(wild, batch)[0] == loss

    if not boundary:
        moved = {**batch, "landmarks": batch["landmarks"].copy()}
        for b, l in HIDDEN:
            moved["landmarks"][b, l] += [9.0, -6.0]
        assert loss_and_grad(outputs, moved)[0] == loss

    nudged = [o.at[0, 3, 3, 37].add(0.5) for o in outputs]  # control: a visible one counts
    assert loss_and_grad(nudged, batch)[0] != loss


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_heatmap_objective_is_the_objective_of_the_visible_landmarks_alone(kind):
    """The same landmarks hidden in both images: the masked mean equals the plain mean over the
    visible channels (without the boundary channel, whose curves need every point)."""
    config = _config(kind, boundary=False)
    hidden = [5, 30, 40, 66]
    batch = _batch([(b, l) for b in range(2) for l in hidden])
    outputs = _outputs(config)
    keep = np.setdiff1d(np.arange(68), hidden)
    loss, _ = _heatmap_loss(config)(outputs, batch)
    alone = {"landmarks": batch["landmarks"][:, keep], "visible": batch["visible"][:, keep]}
    expected = trainer.heatmap_objective([o[..., keep] for o in outputs], alone, config, None)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


@pytest.mark.parametrize("kind", COORDINATE_LOSSES)
def test_coordinate_objective_ignores_invisible_landmarks(kind):
    config = _config(kind, model="cnn6")
    batch = _batch()
    rng = np.random.default_rng(2)
    pred = jnp.asarray(batch["landmarks"] + rng.normal(scale=3.0, size=(2, 68, 2)), jnp.float32)
    loss_and_grad = jax.jit(jax.value_and_grad(
        lambda p, b: trainer.regression_objective(p, b, config)))
    loss, grad = loss_and_grad(pred, batch)
    assert np.isfinite(loss) and loss > 0
    grad = np.asarray(grad)
    for b, l in HIDDEN:
        assert not np.any(grad[b, l]), f"gradient reaches invisible landmark {l}"
    assert np.all(np.abs(grad[0, 37]) > 0)

    wild_pred, wild_batch = pred, {**batch, "landmarks": batch["landmarks"].copy()}
    for b, l in HIDDEN:
        wild_pred = wild_pred.at[b, l].set([1e4, -50.0])
        wild_batch["landmarks"][b, l] = [-7.0, 300.0]
    assert loss_and_grad(wild_pred, wild_batch)[0] == loss
    assert loss_and_grad(pred.at[0, 37, 0].add(2.0), batch)[0] != loss  # control

    # The mean runs over the visible coordinates only: the visible points alone give the same.
    keep = [np.flatnonzero(row) for row in batch["visible"]]
    alone = [trainer.regression_objective(
        pred[b][keep[b]][None], {"landmarks": batch["landmarks"][b][keep[b]][None],
                                 "visible": np.ones((1, len(keep[b])), bool)}, config)
        for b in range(2)]
    counts = np.array([len(k) for k in keep], np.float64)
    np.testing.assert_allclose(loss, np.dot(alone, counts) / counts.sum(), rtol=1e-6)
