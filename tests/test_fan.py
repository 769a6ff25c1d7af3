"""Tests of the stacked-hourglass FAN: layout, shapes, CoordConv boundary mask, BatchNorm sync."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from awing_jax.models.common import count_params, variable_shapes
from awing_jax.models.fan import FAN, add_coords, coord_channels

# XLA's own convolutions: they compile in about half the time of the CPU Winograd lowering that
# "auto" picks, and the lowerings are tested against each other in tests/test_runtime.py.
# One hourglass level: what these tests check (shapes, dtypes, CoordConv, BatchNorm) does not
# depend on the depth, and each level adds three ConvBlocks to every program compiled here.
TINY = dict(num_landmarks=5, num_stacks=2, features=16, depth=1, conv_lowering="xla")
SIZE = 32  # heatmaps 8 x 8, hourglass level 4 x 4


def _images(batch: int, seed: int = 0) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), (batch, SIZE, SIZE, 3))


def _variables(model: FAN, x: jax.Array, seed: int = 0):
    """Random variables of the right shapes, filled by NumPy.

    Compiling ``model.init`` takes tens of seconds on a CPU; the tests need any well-scaled
    weights, not the initialisers. BatchNorm scale/bias are perturbed so they matter.
    """
    shapes = variable_shapes(model, x.shape[1])  # (batch, size, size, 3) images
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = np.prod(leaf.shape[:-1])
            return rng.normal(size=leaf.shape).astype(np.float32) / np.sqrt(fan_in)
        if name == "scale":
            return (1.0 + 0.1 * rng.normal(size=leaf.shape)).astype(np.float32)
        if name == "var":
            return np.ones(leaf.shape, np.float32)
        if name == "mean":
            return np.zeros(leaf.shape, np.float32)
        return (0.1 * rng.normal(size=leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _apply(model: FAN, variables, x: jax.Array, train: bool):
    if train:
        return model.apply(variables, x, train=True, mutable=["batch_stats"])
    return model.apply(variables, x, train=False)


@pytest.mark.parametrize(
    ("num_landmarks", "num_stacks", "expected"),
    [(98, 4, 24_153_036), (98, 1, 6_333_603), (98, 2, 12_273_414),
     (68, 4, 24_099_156), (29, 4, 24_029_112)],
)
def test_parameter_count_matches_reference_layout(num_landmarks, num_stacks, expected):
    # Any lowering has the same parameters (tests/test_runtime.py); XLA's traces fastest.
    model = FAN(num_landmarks, num_stacks=num_stacks, conv_lowering="xla")
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 256, 256, 3)), train=False))
    assert count_params(shapes["params"]) == expected


def test_parameter_names_follow_documented_mapping():
    model = FAN(**dict(TINY, depth=2))  # two levels: the recursion's names
    params = _variables(model, _images(1))["params"]
    per_stack = ["coord_conv", "hourglass", "head_block", "head_conv", "head_bn", "heatmap_conv"]
    expected = {"stem_conv", "stem_bn", "stem_block_0", "stem_block_1", "stem_block_2"}
    expected |= {f"{name}_{i}" for name in per_stack for i in range(2)}
    expected |= {"merge_features_0", "merge_heatmaps_0"}
    assert set(params) == expected
    assert set(params["hourglass_0"]) == {"skip_2", "down_2", "up_2", "skip_1", "down_1", "up_1",
                                          "bottom"}
    # Only a change of width gets the 1x1 shortcut; coordinate channels widen the first convs.
    assert "downsample_conv" in params["stem_block_0"]
    assert "downsample_conv" not in params["stem_block_1"]
    assert params["stem_conv"]["kernel"].shape == (7, 7, 3 + 3, 64)
    assert params["coord_conv_0"]["kernel"].shape == (1, 1, 16 + 3, 16)
    assert params["coord_conv_1"]["kernel"].shape == (1, 1, 16 + 5, 16)
    assert params["heatmap_conv_1"]["kernel"].shape == (1, 1, 16, 5 + 1)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_forward_shapes_and_dtypes(dtype):
    model = FAN(**TINY, dtype=dtype)
    x = _images(2)
    shapes = variable_shapes(model, SIZE)
    assert {p.dtype for p in jax.tree_util.tree_leaves(shapes)} == {jnp.dtype(jnp.float32)}
    outputs = _apply(model, _variables(model, x), x, False)
    assert len(outputs) == 2
    for out in outputs:
        assert out.shape == (2, SIZE // 4, SIZE // 4, 6)
        assert out.dtype == jnp.float32
        assert np.isfinite(np.asarray(out)).all()


def test_without_boundary_or_coordconv():
    x = _images(1)
    no_boundary = FAN(**TINY, boundary=False)
    outputs = _apply(no_boundary, _variables(no_boundary, x), x, False)
    assert [o.shape for o in outputs] == [(1, 8, 8, 5)] * 2

    plain = FAN(**TINY, coordconv=False)
    variables = _variables(plain, x)
    assert not any(name.startswith("coord_conv") for name in variables["params"])
    assert variables["params"]["stem_conv"]["kernel"].shape[2] == 3
    outputs = _apply(plain, variables, x, False)
    assert [o.shape for o in outputs] == [(1, 8, 8, 6)] * 2


def test_train_mode_normalises_with_batch_statistics_and_updates_them():
    model = FAN(**dict(TINY, num_stacks=1))
    x = _images(2)
    variables = _variables(model, x)
    train_outputs, updates = _apply(model, variables, x, True)
    eval_outputs = _apply(model, variables, x, False)
    assert not np.allclose(train_outputs[0], eval_outputs[0])
    # The stem BN sees conv(x) + bias; its new running mean moves 10% toward the batch mean.
    stem = jax.lax.conv_general_dilated(
        add_coords(x), variables["params"]["stem_conv"]["kernel"], (2, 2), ((3, 3), (3, 3)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    ) + variables["params"]["stem_conv"]["bias"]
    np.testing.assert_allclose(
        updates["batch_stats"]["stem_bn"]["mean"], 0.1 * stem.mean(axis=(0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(
        updates["batch_stats"]["stem_bn"]["var"], 0.9 + 0.1 * stem.var(axis=(0, 1, 2)),
        rtol=1e-4)


def test_coord_channels_orientation_and_range():
    coords = np.asarray(coord_channels(4, 6))
    assert coords.shape == (1, 4, 6, 3)
    x, y, r = coords[0, ..., 0], coords[0, ..., 1], coords[0, ..., 2]
    np.testing.assert_allclose(x[0], np.linspace(-1, 1, 6), atol=1e-6)  # along columns
    np.testing.assert_allclose(x, np.broadcast_to(x[:1], x.shape))
    np.testing.assert_allclose(y[:, 0], np.linspace(-1, 1, 4), atol=1e-6)  # along rows
    np.testing.assert_allclose(y, np.broadcast_to(y[:, :1], y.shape))
    np.testing.assert_allclose(r, np.hypot(x, y) / np.sqrt(2), atol=1e-6)


def test_coord_channels_boundary_mask_threshold_and_no_gradient():
    # Values straddling the threshold 0.05, and ones the clip to [0, 1] must handle.
    boundary = jnp.array([[[0.0, 0.05, 0.051, 0.7], [2.0, -3.0, 0.049, 1.0]]])  # (1, 2, 4)
    coords = np.asarray(coord_channels(2, 4, boundary))
    assert coords.shape == (1, 2, 4, 5)
    on = np.array([[[False, False, True, True], [True, False, False, True]]])
    np.testing.assert_array_equal(coords[..., 3], np.where(on, coords[..., 0], 0.0))
    np.testing.assert_array_equal(coords[..., 4], np.where(on, coords[..., 1], 0.0))

    weights = jax.random.normal(jax.random.key(0), (1, 2, 4, 5))
    grad = jax.grad(lambda b: jnp.sum(coord_channels(2, 4, b) * weights))(boundary)
    np.testing.assert_array_equal(grad, 0.0)


def test_second_stack_coordconv_reads_first_stack_boundary_through_mask_only():
    """Injects a known boundary into stack 0's output and records stack 1's CoordConv input."""
    model = FAN(**TINY)
    x = _images(1)
    variables = _variables(model, x)
    rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    # A ring around the centre at 0.3, a fainter pixel below the threshold, a value > 1.
    injected = np.where(np.abs(np.hypot(rows - 3.5, cols - 3.5) - 2.5) < 0.6, 0.3, 0.0)
    injected[0, 0], injected[7, 7] = 0.04, 1.7
    injected = jnp.asarray(injected[None], jnp.float32)

    def run(boundary):
        """(stack 1's CoordConv input, outputs) with stack 0's boundary channel replaced."""
        recorded = {}

        def interceptor(next_fun, args, kwargs, context):
            name = context.module.name
            if name == "coord_conv_1":
                recorded["input"] = args[0]
            out = next_fun(*args, **kwargs)
            if name == "heatmap_conv_0":
                out = out.at[..., -1].set(boundary)
            return out

        with nn.intercept_methods(interceptor):
            outputs = model.apply(variables, x, train=False)
        return recorded["input"], outputs

    def sensitivities(boundary):
        """d/d boundary of stack 1's masked coordinate channels and of its heatmaps."""
        def summaries(b):
            features, outputs = run(b)
            return jnp.stack([jnp.sum(features[..., 19:] ** 2), jnp.sum(outputs[1])])
        return jax.jacrev(summaries)(boundary)

    (features, outputs), jacobian = jax.jit(lambda b: (run(b), sensitivities(b)))(injected)
    np.testing.assert_array_equal(outputs[0][..., -1], injected)
    assert features.shape == (1, 8, 8, 16 + 5)
    xs, ys = features[..., 16], features[..., 17]
    mask = np.asarray(injected > 0.05)
    assert mask.sum() > 4 and not mask[0, 0, 0] and mask[0, 7, 7]
    np.testing.assert_array_equal(features[..., 19], np.where(mask, xs, 0.0))
    np.testing.assert_array_equal(features[..., 20], np.where(mask, ys, 0.0))
    # No gradient through the mask; the heatmap does reach stack 1 through the merge conv, so the
    # zero is not vacuous.
    np.testing.assert_array_equal(jacobian[0], 0.0)
    assert np.abs(jacobian[1]).max() > 0


def test_batch_norm_statistics_sync_across_devices():
    num_devices = 8
    if jax.local_device_count() < num_devices:
        pytest.skip(f"needs {num_devices} devices")
    config = dict(TINY, num_stacks=1)
    single = FAN(**config)
    synced = FAN(**config, bn_axis_name="batch")
    x = _images(num_devices, seed=3)
    variables = _variables(single, x)

    outputs, updates = _apply(single, variables, x, True)
    p_outputs, p_updates = jax.pmap(
        lambda v, x: synced.apply(v, x, train=True, mutable=["batch_stats"]),
        axis_name="batch", in_axes=(None, 0),
    )(variables, x[:, None])  # one image per device: per-device statistics differ the most

    # Unsynchronised statistics would differ by O(0.1); 5e-5 covers float32 rounding (on CPU the
    # 3x3 convolutions are Winograd products whose summation order depends on the batch size).
    np.testing.assert_allclose(
        np.asarray(p_outputs[0]).reshape(outputs[0].shape), outputs[0], atol=5e-5, rtol=1e-5)
    for expected, got in zip(jax.tree_util.tree_leaves(updates["batch_stats"]),
                             jax.tree_util.tree_leaves(p_updates["batch_stats"]), strict=True):
        for device in range(num_devices):
            np.testing.assert_allclose(got[device], expected, atol=5e-5, rtol=1e-5)
