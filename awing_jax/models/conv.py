"""Convolution lowering used by every model: 1x1 convolutions become matrix products.

A 1x1 convolution over (B, H, W, C_in) is the matrix product of the (B*H*W, C_in) pixels with
the (C_in, C_out) kernel. XLA's CPU backend runs such convolutions (and far worse, their weight
gradients) through its generic convolution path at a fraction of its matrix-product rate; the
same work written as a ``dot`` is 2.5-4x faster forward and 3-4x faster backward on the 2-core
development CPU (``python -m bench.conv_lowering``, BENCHMARKS.md). On GPU both forms reach
cuBLAS/cuDNN alike. The result is the same function of the same parameters: flax's ``nn.Conv``
keeps its (1, 1, C_in, C_out) kernel and bias, so checkpoints and converted weights do not change.

:func:`conv_general_dilated` has ``jax.lax.conv_general_dilated``'s signature and is passed to
``nn.Conv(conv_general_dilated=...)``. Strided 1x1 convolutions (ResNet's projection shortcuts)
take every ``stride``-th pixel first, which is what the convolution computes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
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


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None) -> jax.Array:
    """``lax.conv_general_dilated``, with unpadded 1x1 NHWC convolutions as a matrix product."""
    if batch_group_count == 1 and _is_pointwise(
            rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count):
        sy, sx = window_strides
        if (sy, sx) != (1, 1):
            lhs = lhs[:, ::sy, ::sx, :]
        batch, height, width, channels = lhs.shape
        out = jnp.dot(lhs.reshape(-1, channels), rhs.reshape(channels, rhs.shape[-1]),
                      precision=precision, preferred_element_type=preferred_element_type)
        return out.reshape(batch, height, width, rhs.shape[-1])
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
