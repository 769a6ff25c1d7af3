"""How the models' convolutions are lowered: ``conv_lowering`` of every model, one of

    "xla"       every convolution is ``lax.conv_general_dilated`` (XLA's own).
    "matmul"    unpadded 1x1 NHWC convolutions become matrix products; the rest XLA's.
    "winograd"  as "matmul", and stride-1 padding-1 float32 NHWC 3x3 convolutions on maps of
                at least 8x8 run as Winograd F(4x4, 3x3) (on every platform).
    "auto"      "winograd" on CPU and "matmul" elsewhere, chosen by ``lax.platform_dependent``
                when the program is lowered (GPU and TPU keep cuDNN's / XLA's 3x3 algorithms).

All four compute the same function of the same parameters (flax's ``nn.Conv`` keeps its kernel
and bias), to float32 rounding: checkpoints and converted weights do not depend on the choice.
What differs is speed and compile time; docs/convolution_lowering.md explains the algorithms and
the trade-off, BENCHMARKS.md holds the measurements behind each program's default.

A 1x1 convolution over (B, H, W, C_in) is the matrix product of the (B*H*W, C_in) pixels with the
(C_in, C_out) kernel; strided ones (ResNet's projection shortcuts) take every ``stride``-th pixel
first. Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, CVPR 2016) cuts the padded input
into overlapping 6x6 tiles advancing by 4, maps each tile and the kernel into a 6x6 transform
domain by fixed matrices, turns the 36 transform positions into 36 independent
(tiles, C_in) x (C_in, C_out) matrix products and maps each product back to a 4x4 output block:
36 multiplications per 16 outputs and input channel instead of 144. Its backward pass is written
by hand (:func:`winograd_conv3x3`).

:func:`conv_function` returns, for a lowering, a function with ``lax.conv_general_dilated``'s
signature for ``nn.Conv(conv_general_dilated=...)``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# flax's nn.Conv asks for NHWC inputs, HWIO kernels and NHWC outputs.
_NHWC = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), ("NHWC", "HWIO", "NHWC"))


def _is_pointwise(rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                  feature_group_count) -> bool:
    if rhs.ndim != 4 or rhs.shape[:2] != (1, 1) or feature_group_count != 1:
        return False
    if dimension_numbers is None or lax.conv_dimension_numbers(
            (1, 1, 1, 1), (1, 1, 1, 1), dimension_numbers) != _NHWC:
        return False
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):  # both pad nothing for a 1x1 kernel
            return False
    elif any(tuple(p) != (0, 0) for p in padding):
        return False
    return all(d == 1 for d in (lhs_dilation or (1, 1))) and all(
        d == 1 for d in (rhs_dilation or (1, 1)))


# F(4x4, 3x3) with interpolation points 0, 1, -1, 2, -2 and infinity: output block
# Y = AT [(G g G^T) * (BT d B)] A for a 6x6 input tile d and a 3x3 kernel g (cross-correlation).
_BT = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], np.float32)
_G = np.array([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]], np.float32)
_AT = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], np.float32)
_TILE = 4  # output block side
_MIN_SIDE = 8  # smaller maps: too few tiles to pay for the transforms


def _is_winograd_3x3(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                     dimension_numbers, feature_group_count) -> bool:
    if rhs.ndim != 4 or rhs.shape[:2] != (3, 3) or feature_group_count != 1:
        return False
    if lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32:
        return False
    if dimension_numbers is None or lax.conv_dimension_numbers(
            (1, 1, 1, 1), (1, 1, 1, 1), dimension_numbers) != _NHWC:
        return False
    if tuple(window_strides) != (1, 1):
        return False
    if isinstance(padding, str):
        if padding.upper() != "SAME":
            return False
    elif any(tuple(p) != (1, 1) for p in padding):
        return False
    if not (all(d == 1 for d in (lhs_dilation or (1, 1)))
            and all(d == 1 for d in (rhs_dilation or (1, 1)))):
        return False
    return min(lhs.shape[1], lhs.shape[2]) >= _MIN_SIDE


def _combine(coefficients, terms):
    """sum_i coefficients[i] * terms[i], skipping zero coefficients (fixed, known at trace time)."""
    total = None
    for c, term in zip(coefficients, terms, strict=True):
        if c == 0:
            continue
        part = term if c == 1 else (-term if c == -1 else term * float(c))
        total = part if total is None else total + part
    return total


def _tiles(size: int) -> int:
    return -(-size // _TILE)


def _input_transform(x) -> jax.Array:
    """(B, H, W, C) -> (36, B * tiles, C): BT d B for every 6x6 tile of the once-padded input."""
    _, height, width, channels = x.shape
    a, m = _BT.shape[0], _TILE
    tiles_h, tiles_w = _tiles(height), _tiles(width)
    # One pixel of "same" padding, plus what completes the last 4x4 block (cropped at the end).
    xp = jnp.pad(x, ((0, 0), (1, tiles_h * m + 1 - height), (1, tiles_w * m + 1 - width), (0, 0)))
    # Separably: rows i of every tile (stride-4 row slices), then columns j.
    rows = [xp[:, i:i + tiles_h * m:m] for i in range(a)]
    by_rows = jnp.stack([_combine(_BT[k], rows) for k in range(a)])  # (6, B, th, Wp, C)
    cols = [by_rows[:, :, :, j:j + tiles_w * m:m] for j in range(a)]
    v = jnp.stack([_combine(_BT[k], cols) for k in range(a)], axis=1)  # (6, 6, B, th, tw, C)
    return v.reshape(a * a, -1, channels)


def _kron_g() -> jax.Array:
    return jnp.asarray(np.kron(_G, _G))  # (36, 9): vec(G g G^T) = kron(G, G) vec(g)


def _winograd_forward(x, w, precision, preferred_element_type) -> jax.Array:
    batch, height, width, channels = x.shape
    out_channels = w.shape[-1]
    a, m = _BT.shape[0], _TILE
    tiles_h, tiles_w = _tiles(height), _tiles(width)
    v = _input_transform(x)
    u = jnp.dot(_kron_g(), w.reshape(9, channels * out_channels), precision=precision)
    u = u.reshape(a * a, channels, out_channels)
    prod = lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))), precision=precision,
                           preferred_element_type=preferred_element_type)
    prod = prod.reshape(a, a, batch, tiles_h, tiles_w, out_channels)
    # Output transform AT M A, separably, then the 4x4 blocks back into the image.
    half = jnp.stack([_combine(_AT[p], [prod[k] for k in range(a)]) for p in range(m)])
    full = jnp.stack([_combine(_AT[q], [half[:, k] for k in range(a)]) for q in range(m)])
    # full[q, p, b, ty, tx, c] is output pixel (4 ty + p, 4 tx + q) of image b.
    out = full.transpose(2, 3, 1, 4, 0, 5).reshape(batch, tiles_h * m, tiles_w * m, out_channels)
    return out[:, :height, :width]


def _winograd_weight_gradient(x, dy, precision) -> jax.Array:
    """d loss / d w for upstream gradient ``dy``: kron(G, G)^T sum_tiles V^T (A dY A^T)."""
    batch, height, width, channels = x.shape
    out_channels = dy.shape[-1]
    a, m = _BT.shape[0], _TILE
    tiles_h, tiles_w = _tiles(height), _tiles(width)
    v = _input_transform(x)
    dyp = jnp.pad(dy, ((0, 0), (0, tiles_h * m - height), (0, tiles_w * m - width), (0, 0)))
    dyp = dyp.reshape(batch, tiles_h, m, tiles_w, m, out_channels)
    # Transpose of the output transform, A^T dY A for every 4x4 block, separably.
    by_rows = jnp.stack([_combine(_AT[:, k], [dyp[:, :, p] for p in range(m)]) for k in range(a)])
    dprod = jnp.stack([_combine(_AT[:, j], [by_rows[:, :, :, :, q] for q in range(m)])
                       for j in range(a)], axis=1)  # (6, 6, B, th, tw, Co)
    dprod = dprod.reshape(a * a, -1, out_channels)
    # (36, C_in, tiles) laid out in memory before the product: XLA then hands the contraction
    # to its fast matrix-product kernels (YNNPACK); contracting the tiles axis of (36, tiles,
    # C_in) in place ran far slower inside the training step (BENCHMARKS.md).
    v_t = lax.optimization_barrier(jnp.swapaxes(v, 1, 2))
    du = lax.dot_general(v_t, dprod, (((2,), (1,)), ((0,), (0,))), precision=precision)
    dw = jnp.dot(_kron_g().T, du.reshape(a * a, channels * out_channels), precision=precision)
    return dw.reshape(3, 3, channels, out_channels)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def winograd_conv3x3(x, w, precision=None, preferred_element_type=None) -> jax.Array:
    """Stride-1, padding-1 3x3 cross-correlation of NHWC ``x`` with HWIO ``w`` by F(4x4, 3x3).

    Its input gradient is the same kind of convolution (of the upstream gradient with the kernel
    flipped and its channel axes swapped), run by the same algorithm; its kernel gradient
    contracts the transformed input with the transformed upstream gradient over the tiles. Only
    ``x`` and ``w`` are residuals (XLA may share the input transform with the forward pass).
    """
    return _winograd_forward(x, w, precision, preferred_element_type)


def _winograd_fwd(x, w, precision, preferred_element_type):
    return _winograd_forward(x, w, precision, preferred_element_type), (x, w)


def _winograd_bwd(precision, preferred_element_type, residuals, dy):
    x, w = residuals
    dy = dy.astype(x.dtype)
    dx = _winograd_forward(dy, jnp.flip(w, (0, 1)).swapaxes(2, 3), precision, None)
    return dx, _winograd_weight_gradient(x, dy, precision).astype(w.dtype)


winograd_conv3x3.defvjp(_winograd_fwd, _winograd_bwd)


LOWERINGS = ("xla", "matmul", "winograd", "auto")


def _as_product(lhs, rhs, window_strides, precision, preferred_element_type) -> jax.Array:
    """An unpadded 1x1 NHWC convolution as a matrix product (strides subsample first)."""
    sy, sx = window_strides
    if (sy, sx) != (1, 1):
        lhs = lhs[:, ::sy, ::sx, :]
    batch, height, width, channels = lhs.shape
    out = jnp.dot(lhs.reshape(-1, channels), rhs.reshape(channels, rhs.shape[-1]),
                  precision=precision, preferred_element_type=preferred_element_type)
    return out.reshape(batch, height, width, rhs.shape[-1])


def _lowered(lowering: str):
    """The ``lax.conv_general_dilated``-compatible function of one lowering."""

    def conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
             dimension_numbers=None, feature_group_count=1, batch_group_count=1,
             precision=None, preferred_element_type=None) -> jax.Array:
        def direct(lhs, rhs):
            return lax.conv_general_dilated(
                lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                precision=precision, preferred_element_type=preferred_element_type)

        if lowering == "xla" or batch_group_count != 1:
            return direct(lhs, rhs)
        if _is_pointwise(rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                         feature_group_count):
            return _as_product(lhs, rhs, window_strides, precision, preferred_element_type)
        if lowering != "matmul" and _is_winograd_3x3(
                lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                dimension_numbers, feature_group_count):
            def winograd(lhs, rhs):
                return winograd_conv3x3(lhs, rhs, precision, preferred_element_type)

            if lowering == "winograd":
                return winograd(lhs, rhs)
            return lax.platform_dependent(lhs, rhs, cpu=winograd, default=direct)
        return direct(lhs, rhs)

    conv.__name__ = conv.__qualname__ = f"conv_general_dilated_{lowering}"
    return conv


_FUNCTIONS = {lowering: _lowered(lowering) for lowering in LOWERINGS}


def conv_function(lowering: str):
    """``lax.conv_general_dilated`` as lowered by ``lowering`` (one of :data:`LOWERINGS`).

    The same function object for the same name, so that modules built with equal settings
    compare equal.
    """
    try:
        return _FUNCTIONS[lowering]
    except KeyError:
        raise ValueError(f"unknown conv_lowering {lowering!r}; known: "
                         f"{', '.join(LOWERINGS)}") from None
