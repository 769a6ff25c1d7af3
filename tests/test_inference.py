"""One inference path: evaluation, export and the predictor give the landmarks of
awing_jax.inference.infer for the same crops; the heatmap stride is the one the FAN's output has.

The landmarks are also checked against an independent decoding of the raw network output (the
model applied by hand to ``crops / 255``, the argmax and its quarter-pixel step written here).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from awing_jax import checkpoint, convert, evaluation, export, inference, predict
from awing_jax.models import create_model
from awing_jax.models.fan import FAN
from configs import tiny, tiny_cnn6
from tests._predict_helpers import random_variables

LOWERING = "xla"  # every path built with the same lowering: identical programs up to fusion
BATCH = 3

@pytest.fixture(scope="module")
def fan_checkpoint(tmp_path_factory):
    """A tiny FAN (2 stacks, boundary channel) written as a checkpoint whose stored config has no
    ``model.conv_lowering`` (as older checkpoints and converted weights may not)."""
    config = tiny.get_config()
    config.model.num_stacks = 2
    # Two hourglass levels: at one, one of this random model's heatmap maxima ties with its
    # neighbour within float rounding, and the argmax then differs between two programs.
    config.model.depth = 2
    config.decoder = "reference"
    model = create_model(config, bn_axis_name=None, conv_lowering=LOWERING)
    variables = random_variables(model, config.input_size)
    stored = config.copy_and_resolve_references()
    del stored.model["conv_lowering"]
    workdir = str(tmp_path_factory.mktemp("fan"))
    convert.write_checkpoint(variables, stored, workdir)
    crops = np.random.default_rng(1).integers(0, 256, (BATCH, 32, 32, 3), dtype=np.uint8)
    return workdir, config, model, variables, crops


def _reference_decode(heatmaps, stride):
    """The authors' decoder written out: argmax, a quarter pixel toward the higher neighbour
    off the border, then x = stride * (u + 0.5) - 0.5."""
    batch, height, width, num = heatmaps.shape
    out = np.zeros((batch, num, 2))
    for b in range(batch):
        for k in range(num):
            m = heatmaps[b, :, :, k]
            y, x = np.unravel_index(np.argmax(m), m.shape)
            u, v = float(x), float(y)
            if 0 < x < width - 1 and 0 < y < height - 1:
                u += 0.25 * np.sign(m[y, x + 1] - m[y, x - 1])
                v += 0.25 * np.sign(m[y + 1, x] - m[y - 1, x])
            out[b, k] = stride * (u + 0.5) - 0.5, stride * (v + 0.5) - 0.5
    return out


def test_every_path_gives_the_landmarks_of_the_one_function(fan_checkpoint):
    workdir, config, model, variables, crops = fan_checkpoint
    result = jax.jit(lambda v, x: inference.infer(model, v, x, decoder=config.decoder))(
        variables, crops)
    landmarks = np.asarray(result.landmarks)
    assert landmarks.shape == (BATCH, 68, 2) and len(result.heatmaps) == 2

    # Independently: the model on crops / 255 (one program, not an eager one per operation), its
    # last stack decoded here.
    outputs = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        variables, crops.astype(np.float32) / 255.0)
    last = np.asarray(outputs[-1])
    np.testing.assert_allclose(result.heatmaps[-1], last, atol=1e-5)
    np.testing.assert_allclose(landmarks, _reference_decode(last[..., :68], 4), atol=1e-4)

    evaluated = evaluation.make_inference_fn(config, conv_lowering=LOWERING)(variables, crops)
    np.testing.assert_allclose(evaluated, landmarks, atol=1e-4)

    exported, heatmaps = jax.jit(export.landmark_function(config, conv_lowering=LOWERING))(
        variables, crops)
    np.testing.assert_allclose(exported, landmarks, atol=1e-4)
    np.testing.assert_allclose(heatmaps, last, atol=1e-5)

    # The predictor, from the checkpoint whose config predates conv_lowering.
    predictor = predict.Predictor(workdir, "latest", conv_lowering=LOWERING)
    predicted, confidence, boundaries = predictor.infer_crops(crops)
    np.testing.assert_allclose(predicted, landmarks, atol=1e-4)
    np.testing.assert_allclose(confidence, last[..., :68].max(axis=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(boundaries, last[..., 68], atol=1e-5)
    stacks = predictor.heatmaps(crops)
    for got, want in zip(stacks, outputs, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_stored_config_without_the_lowering_loads_with_the_default(fan_checkpoint):
    workdir = fan_checkpoint[0]
    manager = checkpoint.create_manager(workdir, read_only=True)
    config = checkpoint.restore_config(manager, checkpoint.resolve_step(manager, "latest"))
    assert "conv_lowering" not in config.model
    assert create_model(config).conv_lowering == "auto"
    assert create_model(config, conv_lowering="matmul").conv_lowering == "matmul"
    config.model.conv_lowering = "fastest"
    with pytest.raises(ValueError, match="unknown conv_lowering 'fastest'"):
        create_model(config)


def test_flip_test_of_the_one_function_is_what_evaluation_runs(fan_checkpoint):
    _, config, model, variables, crops = fan_checkpoint
    flipped = inference.infer(model, variables, crops, decoder=config.decoder, flip_test=True,
                              scheme=config.scheme)
    plain = inference.infer(model, variables, crops, decoder=config.decoder)
    mirrored = inference.infer(model, variables, crops[:, :, ::-1], decoder=config.decoder)
    # Averaged per stack with the mirror image's heatmaps mapped back.
    for f, p, m in zip(flipped.heatmaps, plain.heatmaps, mirrored.heatmaps, strict=True):
        np.testing.assert_allclose(
            f, 0.5 * (p + inference.unflip_heatmaps(m, config.scheme, boundary=True)), atol=1e-5)
    evaluated = evaluation.make_inference_fn(config, flip_test=True, conv_lowering=LOWERING)(
        variables, crops)
    np.testing.assert_allclose(evaluated, flipped.landmarks, atol=1e-4)
    with pytest.raises(ValueError, match="needs the landmark scheme"):
        inference.infer(model, variables, crops, decoder=config.decoder, flip_test=True)


@pytest.mark.parametrize("size", [32, 64])
def test_heatmap_stride_is_the_output_shape(size):
    model = FAN(num_landmarks=5, num_stacks=1, features=8, depth=2, conv_lowering=LOWERING)
    shapes = jax.eval_shape(lambda: model.init_with_output(
        jax.random.key(0), jnp.zeros((2, size, size, 3)), train=False))[0]
    assert shapes[-1].shape == (2, size // model.heatmap_stride, size // model.heatmap_stride, 6)
    assert FAN.heatmap_stride == 4  # stem conv stride 2, then 2x2 pooling


def test_a_regressor_returns_its_coordinates_and_no_heatmaps():
    config = tiny_cnn6.get_config()
    model = create_model(config, bn_axis_name=None)
    variables = random_variables(model, config.input_size)
    crops = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    result = inference.infer(model, variables, crops, decoder="subpixel")
    assert result.heatmaps is None
    np.testing.assert_allclose(
        result.landmarks, model.apply(variables, crops / np.float32(255.0), train=False),
        atol=1e-6)
    exported, heatmaps = export.landmark_function(config)(variables, crops)
    assert heatmaps is None
    # Another compilation of the same float32 function: a few ulps of a 32 px coordinate.
    np.testing.assert_allclose(exported, result.landmarks, atol=1e-4)
