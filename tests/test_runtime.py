"""The convolution lowerings ("xla", "matmul", "winograd", "auto": 1x1 as products, 3x3 as
Winograd) and the programs' allocator."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from awing_jax.models.conv import LOWERINGS, _winograd_forward, conv_function, winograd_conv3x3
from awing_jax.models.fan import FAN
from tests._predict_helpers import random_variables

NHWC = ("NHWC", "HWIO", "NHWC")
# The models' default lowering: 1x1 as products everywhere, 3x3 as Winograd on CPU.
conv_general_dilated = conv_function("auto")


def _inputs(shape=(2, 6, 7, 5), kernel=(1, 1, 5, 3), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape).astype(np.float32),
            rng.standard_normal(kernel).astype(np.float32))


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", ["SAME", "VALID", ((0, 0), (0, 0))])
def test_pointwise_conv_as_product_matches_lax_value_and_gradients(stride, padding):
    x, w = _inputs()
    strides = (stride, stride)

    def ours(x, w):
        return conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)

    def reference(x, w):
        return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC,
                                        precision=lax.Precision.HIGHEST)

    out, expected = ours(x, w), reference(x, w)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # The product form must not be the convolution itself: no convolution op in its program.
    assert "convolution" not in jax.jit(ours).lower(x, w).as_text()
    dy = np.random.default_rng(1).standard_normal(expected.shape).astype(np.float32)
    grads = jax.vjp(ours, x, w)[1](dy)
    expected_grads = jax.vjp(reference, x, w)[1](dy)
    for g, e in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["3x3_small", "padded_1x1", "dilated", "grouped", "nchw"])
def test_other_convolutions_fall_through_to_lax(case):
    x, w = _inputs()
    kwargs = {"window_strides": (1, 1), "padding": "SAME", "dimension_numbers": NHWC}
    if case == "3x3_small":  # a 6x7 map: below Winograd's 8x8 minimum
        w = np.random.default_rng(2).standard_normal((3, 3, 5, 3)).astype(np.float32)
    elif case == "padded_1x1":
        kwargs["padding"] = ((1, 1), (0, 0))
    elif case == "dilated":
        kwargs["lhs_dilation"] = (2, 2)  # a transposed convolution: zeros between pixels
        kwargs["padding"] = ((0, 0), (0, 0))
    elif case == "grouped":
        x = np.concatenate([x, x[..., :1]], axis=-1)  # 6 channels in 2 groups of 3
        w = np.random.default_rng(3).standard_normal((1, 1, 3, 4)).astype(np.float32)
        kwargs["feature_group_count"] = 2
    else:
        x = np.transpose(x, (0, 3, 1, 2))
        kwargs["dimension_numbers"] = ("NCHW", "HWIO", "NCHW")
    expected = lax.conv_general_dilated(x, w, **kwargs)
    np.testing.assert_array_equal(conv_general_dilated(x, w, **kwargs), expected)
    assert "convolution" in jax.jit(
        lambda x, w: conv_general_dilated(x, w, **kwargs)).lower(x, w).as_text()


def _lax3x3(x, w, padding=((1, 1), (1, 1))):
    return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=NHWC,
                                    precision=lax.Precision.HIGHEST)


def _jit_vjp(f, x, w, dy):
    """The gradients of ``f`` at (x, w) along ``dy``, computed by one compiled program."""
    return jax.jit(lambda x, w, dy: jax.vjp(f, x, w)[1](dy))(x, w, dy)


def _close(actual, expected, rel=2e-5):
    """Winograd's transforms round differently from a direct sum: compare to the output's scale."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * np.abs(expected).max())


@pytest.mark.parametrize("shape", [(2, 8, 8, 3, 5), (1, 13, 9, 4, 6), (2, 16, 20, 8, 8)])
@pytest.mark.parametrize("padding", ["SAME", ((1, 1), (1, 1))])
def test_winograd_3x3_matches_lax_value_and_gradients(shape, padding):
    """Sizes that are and are not multiples of the 4x4 output block; both spellings of padding."""
    batch, height, width, c_in, c_out = shape
    x, w = _inputs((batch, height, width, c_in), (3, 3, c_in, c_out), seed=height)

    def ours(x, w):
        return conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=NHWC)

    # Under jit, as the models run it (and one program each instead of one per operation).
    traced = jax.jit(ours).trace(x, w)
    out, expected = traced.lower().compile()(x, w), _lax3x3(x, w, padding)
    assert out.shape == expected.shape
    _close(out, expected)
    text = traced.lower(lowering_platforms=("cpu",)).as_text()
    assert "convolution" not in text and "dot_general" in text
    dy = np.random.default_rng(1).standard_normal(expected.shape).astype(np.float32)
    grads = _jit_vjp(ours, x, w, dy)
    expected_grads = _jit_vjp(_lax3x3, x, w, dy)
    for g, e in zip(grads, expected_grads, strict=True):
        _close(g, e)


def test_winograd_hand_written_gradient_equals_autodiff_of_the_same_computation():
    """The custom backward pass (a second Winograd convolution for the input gradient, a tile
    contraction for the kernel's) against JAX differentiating the forward transforms itself."""
    x, w = _inputs((2, 11, 14, 6), (3, 3, 6, 7), seed=4)
    dy = np.random.default_rng(5).standard_normal((2, 11, 14, 7)).astype(np.float32)
    ours = _jit_vjp(winograd_conv3x3, x, w, dy)
    autodiff = _jit_vjp(lambda x, w: _winograd_forward(x, w, None, None), x, w, dy)
    for g, e in zip(ours, autodiff, strict=True):
        _close(g, e)


def test_winograd_only_on_cpu():
    """GPU and TPU programs keep the plain convolution (cuDNN picks its own algorithm)."""
    x, w = _inputs((1, 16, 16, 4), (3, 3, 4, 4))
    traced = jax.jit(
        lambda x, w: conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)
    ).trace(x, w)
    for platform in ("cuda", "tpu"):
        text = traced.lower(lowering_platforms=(platform,)).as_text()
        assert "convolution" in text and "dot_general" not in text


@pytest.mark.parametrize("case", ["strided", "padding_2", "valid", "rhs_dilated", "bfloat16",
                                  "five_by_five"])
def test_other_3x3_convolutions_are_not_winograd(case):
    x, w = _inputs((2, 12, 12, 4), (3, 3, 4, 5))
    kwargs = {"window_strides": (1, 1), "padding": ((1, 1), (1, 1)), "dimension_numbers": NHWC}
    if case == "strided":
        kwargs["window_strides"] = (2, 2)
    elif case == "padding_2":
        kwargs["padding"] = ((2, 2), (2, 2))
    elif case == "valid":
        kwargs["padding"] = "VALID"
    elif case == "rhs_dilated":
        kwargs["rhs_dilation"] = (2, 2)
    elif case == "bfloat16":
        x, w = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    else:
        w = np.random.default_rng(6).standard_normal((5, 5, 4, 5)).astype(np.float32)
    expected = lax.conv_general_dilated(x, w, **kwargs)
    np.testing.assert_array_equal(conv_general_dilated(x, w, **kwargs), expected)
    assert "convolution" in jax.jit(
        lambda x, w: conv_general_dilated(x, w, **kwargs)).lower(x, w).as_text()


def _fan(lowering):
    return FAN(num_landmarks=19, num_stacks=1, features=16, depth=1, conv_lowering=lowering)


def _parameter_shapes(lowering, x):
    model = _fan(lowering)
    return jax.tree.map(jnp.shape, jax.eval_shape(
        lambda: model.init(jax.random.key(0), x, train=False)))


def _fan_loss_and_program(lowering, variables, x, gradient=True):
    """The loss's value and gradient (compiled; without ``gradient``, the value and None) at
    ``variables``, and the number of convolutions left in the loss's program lowered for CPU."""
    model = _fan(lowering)

    def loss(params):
        outputs, _ = model.apply({**variables, "params": params}, x, train=True,
                                 mutable=["batch_stats"])
        return sum(jnp.mean(o**2) for o in outputs)

    params = variables["params"]
    traced = jax.jit(loss).trace(params)
    count = traced.lower(lowering_platforms=("cpu",)).as_text().count("stablehlo.convolution")
    if not gradient:
        return (traced.lower().compile()(params), None), count
    return jax.jit(jax.value_and_grad(loss))(params), count


def test_fan_lowerings_are_one_function_of_the_same_parameters():
    """Every conv_lowering gives the FAN the same parameters, and at the same parameters the same
    outputs and gradients to float32 rounding; "xla" keeps one convolution per nn.Conv, "matmul"
    only the 3x3 and 7x7 ones, and "winograd" / "auto" (on CPU) only the 7x7 stem and the 3x3
    ones on maps below 8x8.

    "auto" is the Winograd lowering's program on CPU behind a platform switch (the same
    convolution count, below): its value is compared, and its gradient, which is the Winograd
    branch's, is not compiled a second time."""
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    variables = random_variables(_fan("xla"), 32)  # (no initialiser to compile)
    (value, grads), plain = _fan_loss_and_program("xla", variables, x)
    counts = {"xla": plain}
    shapes = jax.tree.map(jnp.shape, variables)
    values = {}
    for lowering in ("matmul", "winograd", "auto"):
        # The same names and shapes: checkpoints of one lowering load into every other.
        assert _parameter_shapes(lowering, x) == shapes
        (values[lowering], g), counts[lowering] = _fan_loss_and_program(
            lowering, variables, x, gradient=lowering != "auto")
        np.testing.assert_allclose(values[lowering], value, rtol=1e-5)
        if g is not None:
            for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(grads),
                            strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(values["auto"], values["winograd"], rtol=1e-6)
    num_convs = sum(1 for path, _ in jax.tree_util.tree_leaves_with_path(variables["params"])
                    if path[-1].key == "kernel")
    assert counts["xla"] >= num_convs  # forward, plus the backward's convolutions
    assert 0 < counts["winograd"] == counts["auto"] < counts["matmul"] < counts["xla"]


@pytest.mark.parametrize("lowering", LOWERINGS)
def test_each_lowering_on_each_platform(lowering):
    """Which convolutions remain XLA convolutions in the program lowered for CPU and for CUDA."""
    x, w3 = _inputs((1, 16, 16, 4), (3, 3, 4, 4))
    w1 = w3[:1, :1]
    conv = conv_function(lowering)
    for w, kind in ((w1, "1x1"), (w3, "3x3")):
        traced = jax.jit(lambda x, w: conv(x, w, (1, 1), "SAME", dimension_numbers=NHWC)
                         ).trace(x, w)
        for platform in ("cpu", "cuda"):
            text = traced.lower(lowering_platforms=(platform,)).as_text()
            direct = (lowering == "xla"
                      or (kind == "3x3" and (lowering == "matmul"
                                              or (lowering == "auto" and platform == "cuda"))))
            assert ("convolution" in text) == direct, (kind, platform)
        np.testing.assert_allclose(conv(x, w, (1, 1), "SAME", dimension_numbers=NHWC),
                                   _lax3x3(x, w, "SAME"), rtol=0,
                                   atol=2e-5 * np.abs(_lax3x3(x, w, "SAME")).max())


def test_unknown_lowering_is_named():
    with pytest.raises(ValueError, match=r"'fast'.*xla, matmul, winograd, auto"):
        conv_function("fast")


_FAULTS = textwrap.dedent("""
    import ctypes, ctypes.util, resource, sys
    from awing_jax.runtime import retain_freed_memory
    if sys.argv[1] == "retain":
        assert retain_freed_memory()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = (ctypes.c_void_p,)
    size = 256 * 2**20
    faults = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)  # touch every page
        libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(*faults)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc setting")
def test_retained_memory_is_reused_without_page_faults():
    """256 MiB freed and allocated again: glibc's default faults every page in again each time
    (65,536 pages of 4 KiB); after retain_freed_memory() only the first allocation faults."""

    def faults(mode):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True,
                             text=True, check=True)
        return [int(v) for v in out.stdout.split()]

    pages = 256 * 2**20 // 4096
    default, retained = faults("default"), faults("retain")
    assert all(f > pages // 2 for f in default), default
    assert retained[0] > pages // 2, retained
    assert all(f < pages // 100 for f in retained[1:]), retained


_CACHE = textwrap.dedent("""
    import os, time
    import jax, jax.numpy as jnp
    from awing_jax.runtime import use_compilation_cache
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    directory = use_compilation_cache()
    assert (jax.config.jax_compilation_cache_dir or None) == directory
    jax.jit(lambda x: jnp.sin(x) * 3 + 1).lower(jnp.ones(7)).compile()
    entries = sorted(os.listdir(directory)) if directory else []
    print(directory, len(entries))
""")


def test_compilation_cache_default_directory_and_environment(tmp_path):
    """Default: programs land under $XDG_CACHE_HOME/awing_jax/xla; JAX_COMPILATION_CACHE_DIR,
    when set, wins; set empty, it turns the cache off."""

    def run(**env):
        base = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
        out = subprocess.run([sys.executable, "-c", _CACHE], capture_output=True, text=True,
                             env={**base, "XDG_CACHE_HOME": str(tmp_path / "xdg"), **env})
        assert out.returncode == 0, out.stderr[-2000:]
        directory, entries = out.stdout.split()
        return directory, int(entries)

    directory, entries = run()
    assert directory == str(tmp_path / "xdg" / "awing_jax" / "xla") and entries >= 1
    chosen = str(tmp_path / "chosen")
    assert run(JAX_COMPILATION_CACHE_DIR=chosen) == (chosen, entries)
    assert run(JAX_COMPILATION_CACHE_DIR="") == ("None", 0)
