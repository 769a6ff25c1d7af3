"""The FAN's building blocks and the weight converter, each against its own definition.

No comparison with awing_jax/torch_reference.py here (that parity test shares any misreading of
the layout): a ConvBlock whose residual branch is zeroed is its shortcut; the branch itself is
three pre-activation convolutions concatenated at widths out/2, out/4, out/4; an hourglass whose
lower path is reduced to identities returns its skip path plus the upsampled average pool, level by
level; and each converted kernel, applied by ``lax.conv``, computes what PyTorch's ``conv2d``
computes with the original kernel, including the CoordConv inputs, which the reference orders
(row coordinate, column coordinate, r[, masked row, masked column]).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import traverse_util

from awing_jax import convert
from awing_jax.models.common import BN_EPSILON
from awing_jax.models.fan import FAN, ConvBlock, Hourglass, add_coords

RNG = np.random.default_rng(0)
# Maps are small (4 x 4 and below): the structure is the same at any size, and the CPU's
# Winograd convolutions, which take long to compile, apply from 8 x 8 on.


def _random_variables(module, x, seed=0):
    """Variables of ``module`` for input ``x``, filled by NumPy (no initialiser compile)."""
    shapes = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return (rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(
                np.float32)
        if name == "var":
            return rng.uniform(0.5, 2.0, leaf.shape).astype(np.float32)
        if name == "scale":
            return rng.uniform(0.8, 1.2, leaf.shape).astype(np.float32)
        return (0.3 * rng.normal(size=leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _zero_branch(variables):
    """The same variables with the residual branch's conv kernels (conv_0..2) zeroed."""
    def zero(path, leaf):
        names = [p.key for p in path]
        return np.zeros_like(leaf) if names[-2].startswith("conv_") else leaf
    return jax.tree_util.tree_map_with_path(zero, variables)


def _bn_relu(x, params, stats):
    """Inference-mode BatchNorm (running statistics) and ReLU, in NumPy."""
    y = (x - stats["mean"]) / np.sqrt(stats["var"] + BN_EPSILON) * params["scale"] + params["bias"]
    return np.maximum(y, 0.0)


def _conv_lax(x, kernel, stride=1):
    """Cross-correlation with PyTorch's symmetric padding k // 2, by XLA's own convolution."""
    pad = kernel.shape[0] // 2
    return np.asarray(jax.lax.conv_general_dilated(
        jnp.asarray(x), jnp.asarray(kernel), (stride, stride), ((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest"))


def _apply(module, variables, x):
    return np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x))


# ----------------------------------------------------------------------------------- ConvBlock


def test_conv_block_with_zeroed_branch_is_the_identity():
    x = jnp.asarray(RNG.normal(size=(2, 4, 4, 16)), jnp.float32)
    block = ConvBlock(features=16)
    variables = _zero_branch(_random_variables(block, x))
    np.testing.assert_array_equal(_apply(block, variables, x), np.asarray(x))


def test_conv_block_with_zeroed_branch_is_its_projection_shortcut():
    x = jnp.asarray(RNG.normal(size=(2, 4, 4, 8)), jnp.float32)
    block = ConvBlock(features=16)
    variables = _zero_branch(_random_variables(block, x, seed=1))
    p, s = variables["params"], variables["batch_stats"]
    shortcut = _bn_relu(np.asarray(x), p["downsample_bn"], s["downsample_bn"]) @ np.asarray(
        p["downsample_conv"]["kernel"])[0, 0]
    np.testing.assert_allclose(_apply(block, variables, x), shortcut, rtol=1e-5, atol=1e-5)
    assert np.abs(shortcut).max() > 0.1


def test_conv_block_branch_is_three_chained_pre_activation_convs_concatenated():
    """With the projection shortcut zeroed, the output is the branch alone."""
    x = jnp.asarray(RNG.normal(size=(2, 4, 4, 8)), jnp.float32)
    block = ConvBlock(features=16)
    variables = _random_variables(block, x, seed=2)
    variables["params"]["downsample_conv"]["kernel"] = np.zeros_like(
        variables["params"]["downsample_conv"]["kernel"])
    p, s = variables["params"], variables["batch_stats"]
    h, outputs = np.asarray(x), []
    for k, width in enumerate((8, 4, 4)):
        kernel = np.asarray(p[f"conv_{k}"]["kernel"])
        assert kernel.shape == (3, 3, h.shape[-1], width)
        h = _conv_lax(_bn_relu(h, p[f"bn_{k}"], s[f"bn_{k}"]), kernel)
        outputs.append(h)
    np.testing.assert_allclose(_apply(block, variables, x), np.concatenate(outputs, -1),
                               rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------- Hourglass


def _pool(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _upsample(x):
    return np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)


@pytest.fixture(scope="module")
def hourglass():
    depth, features = 2, 8
    x = jnp.asarray(RNG.normal(size=(1, 4, 4, features)), jnp.float32)
    model = Hourglass(depth=depth, features=features)
    return model, x, _random_variables(model, x, seed=3)


def _low_path_zeroed(variables):
    """Every block off the skip path (down_n, bottom, up_n) reduced to its identity shortcut."""
    def zero(path, leaf):
        names = [p.key for p in path]
        on_low_path = not names[1].startswith("skip_")
        return np.zeros_like(leaf) if on_low_path and names[-2].startswith("conv_") else leaf
    return jax.tree_util.tree_map_with_path(zero, variables)


def test_hourglass_of_identity_blocks_adds_the_upsampled_average_pool_at_every_level(hourglass):
    model, x, variables = hourglass
    everything_zeroed = _zero_branch(variables)

    def expected(h, level):  # H_n(h) = h + up(H_{n-1}(pool h)), H_0 = identity
        return h if level == 0 else h + _upsample(expected(_pool(h), level - 1))

    np.testing.assert_allclose(_apply(model, everything_zeroed, x),
                               expected(np.asarray(x), model.depth), rtol=1e-5, atol=1e-5)


def test_hourglass_with_identity_low_path_returns_its_skip_path(hourglass):
    """Skip blocks with random weights, the lower path reduced to identities: at every level the
    output is the skip block's output plus the upsampled lower level."""
    model, x, variables = hourglass
    variables = _low_path_zeroed(variables)

    def skip(level, h):
        block_vars = {c: variables[c][f"skip_{level}"] for c in ("params", "batch_stats")}
        return _apply(ConvBlock(features=model.features), block_vars, jnp.asarray(h))

    def expected(h, level):
        return skip(level, h) + (_upsample(expected(_pool(h), level - 1)) if level > 1
                                 else _upsample(_pool(h)))

    reference = expected(np.asarray(x), model.depth)
    np.testing.assert_allclose(_apply(model, variables, x), reference, rtol=1e-4, atol=1e-4)
    assert np.abs(reference - np.asarray(x)).max() > 0.5  # the skip blocks do something


# ------------------------------------------------------------------------------------ converter

LAYOUT = dict(num_landmarks=19, num_stacks=2, features=16, depth=1)
SIZE = 16


def _torch_state_dict(seed=4):
    """A state dict of the reference's keys (OIHW kernels) for LAYOUT, random values."""
    model = FAN(**LAYOUT)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False))
    rng = np.random.default_rng(seed)
    state = {}
    for collection in ("params", "batch_stats"):
        for path, leaf in traverse_util.flatten_dict(shapes[collection]).items():
            shape = leaf.shape
            if path[-1] == "kernel":
                shape = tuple(shape[i] for i in (3, 2, 0, 1))  # OIHW
            value = rng.normal(size=shape) if path[-1] != "var" else rng.uniform(0.5, 2, shape)
            state[convert.reference_key(collection, path)] = torch.tensor(value,
                                                                          dtype=torch.float32)
    return state


@pytest.fixture(scope="module")
def converted():
    state = _torch_state_dict()
    return state, convert.convert_state_dict(state, **LAYOUT)["params"]


def _torch_conv(x_nhwc, weight, stride=1):
    pad = weight.shape[-1] // 2
    out = torch.nn.functional.conv2d(torch.from_numpy(np.ascontiguousarray(
        x_nhwc.transpose(0, 3, 1, 2))), weight, stride=stride, padding=pad)
    return out.numpy().transpose(0, 2, 3, 1)


def _reference_coords(height, width, boundary=None):
    """The reference's coordinate channels, NHWC: (row coordinate, column coordinate, r) and with a
    boundary (row, column) masked by it, each coordinate running -1..1 across the map."""
    rows = np.broadcast_to(np.linspace(-1, 1, height)[:, None], (height, width))
    cols = np.broadcast_to(np.linspace(-1, 1, width)[None, :], (height, width))
    r = np.hypot(rows, cols) / np.hypot(rows, cols).max()
    channels = [rows, cols, r]
    if boundary is not None:
        on = np.clip(boundary, 0, 1) > 0.05
        channels += [np.where(on, rows, 0.0), np.where(on, cols, 0.0)]
    return np.stack(channels, axis=-1)[None]


def test_converted_3x3_kernel_computes_what_pytorch_computes(converted):
    state, params = converted
    x = RNG.normal(size=(1, 5, 6, 16)).astype(np.float32)
    weight = state["m0.b1_1.conv1.weight"]  # (8, 16, 3, 3): asymmetric in every axis
    ours = params["hourglass_0"]["skip_1"]["conv_0"]["kernel"]
    np.testing.assert_allclose(_conv_lax(x, ours), _torch_conv(x, weight), rtol=1e-4, atol=1e-4)
    # A kernel whose taps were mirrored or transposed would give something else.
    assert np.abs(_conv_lax(x, ours[::-1]) - _torch_conv(x, weight)).max() > 0.5
    assert np.abs(_conv_lax(x, ours.transpose(1, 0, 2, 3)) - _torch_conv(x, weight)).max() > 0.5


def test_converted_1x1_kernels_keep_input_and_output_channels(converted):
    state, params = converted
    for key, module in [("l1.weight", "heatmap_conv_1"), ("bl0.weight", "merge_features_0"),
                        ("al0.weight", "merge_heatmaps_0")]:
        ours = params[module]["kernel"]
        x = RNG.normal(size=(1, 4, 4, ours.shape[2])).astype(np.float32)
        np.testing.assert_allclose(_conv_lax(x, ours), _torch_conv(x, state[key]), rtol=1e-4,
                                   atol=1e-4)


def test_converted_stem_reads_the_coordinate_channels_in_the_reference_order(converted):
    """The 7x7 stride-2 stem on RGB + coordinates: ours appends (x, y, r), the reference
    (row, column, r); the converted kernel must make both compute the same."""
    state, params = converted
    image = RNG.random((1, SIZE, SIZE, 3)).astype(np.float32)
    ours = _conv_lax(np.asarray(add_coords(jnp.asarray(image))),
                     params["stem_conv"]["kernel"], stride=2) + params["stem_conv"]["bias"]
    reference_input = np.concatenate([image, _reference_coords(SIZE, SIZE)], -1).astype(
        np.float32)
    theirs = _torch_conv(reference_input, state["conv1.conv.weight"], stride=2)
    theirs += state["conv1.conv.bias"].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_converted_coordconv_reads_the_masked_coordinates_in_the_reference_order(converted):
    """Stack 1's CoordConv: features + (x, y, r, x_b, y_b) here, (row, column, r, row_b,
    column_b) in the reference, with a boundary masking about half the pixels."""
    state, params = converted
    features = RNG.normal(size=(1, 4, 4, 16)).astype(np.float32)
    boundary = RNG.uniform(-0.1, 0.3, (1, 4, 4)).astype(np.float32)
    ours = _conv_lax(np.asarray(add_coords(jnp.asarray(features), jnp.asarray(boundary))),
                     params["coord_conv_1"]["kernel"]) + params["coord_conv_1"]["bias"]
    reference_input = np.concatenate([features, _reference_coords(4, 4, boundary[0])], -1)
    theirs = _torch_conv(reference_input.astype(np.float32), state["m1.coordconv.conv.weight"])
    theirs += state["m1.coordconv.conv.bias"].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
