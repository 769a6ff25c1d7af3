"""The 1x1-convolution lowering and the allocator setting of the programs."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from awing_jax.models import fan
from awing_jax.models.conv import conv_general_dilated
from awing_jax.models.fan import FAN

NHWC = ("NHWC", "HWIO", "NHWC")


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


@pytest.mark.parametrize("case", ["3x3", "padded_1x1", "dilated", "grouped", "nchw"])
def test_other_convolutions_fall_through_to_lax(case):
    x, w = _inputs()
    kwargs = {"window_strides": (1, 1), "padding": "SAME", "dimension_numbers": NHWC}
    if case == "3x3":
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


def test_fan_equals_the_same_network_with_plain_convolutions(monkeypatch):
    """Swapping the lowering back to lax changes neither outputs nor gradients of the FAN."""
    model = FAN(num_landmarks=19, num_stacks=2, features=16, depth=2)
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    variables = model.init(jax.random.key(0), x, train=False)

    def loss(params):
        outputs, _ = model.apply({**variables, "params": params}, x, train=True,
                                 mutable=["batch_stats"])
        return sum(jnp.mean(o**2) for o in outputs)

    ours = jax.value_and_grad(loss)(variables["params"])
    assert "convolution" in jax.jit(loss).lower(variables["params"]).as_text()  # the 3x3s
    monkeypatch.setattr(fan, "conv_general_dilated", lax.conv_general_dilated)
    plain = jax.value_and_grad(loss)(variables["params"])
    np.testing.assert_allclose(ours[0], plain[0], rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(ours[1]), jax.tree_util.tree_leaves(plain[1]),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


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
