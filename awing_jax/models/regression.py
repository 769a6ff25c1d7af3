"""Coordinate-regression networks of the Wing paper (Feng et al., CVPR 2018): CNN-6 and
ResNet-50, each mapping a face crop straight to its landmark coordinates.

Both take (B, S, S, 3) RGB in [0, 1] and return (B, L, 2) float32 ``(x, y)`` in input pixels
(awing-jax's convention: 0-based, integers at pixel centres). The last dense layer predicts
*normalised* coordinates u in [-1, 1] across the input, -1 at the left/top image edge and +1 at the
right/bottom edge, mapped to pixels by :func:`normalised_to_pixels`. That layer starts at zero, so
an untrained network predicts every point at the image centre (a bounded first loss), and it runs
in float32 even in a bfloat16 network: bfloat16 keeps 8 bits of mantissa, about one pixel at 256.

Convolutions and BatchNorm are the FAN's (PyTorch padding and BatchNorm defaults,
:mod:`awing_jax.models.common`), lowered as ``conv_lowering`` says (:mod:`awing_jax.models.conv`).
docs/models.md describes both networks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from awing_jax.models.common import batch_norm, conv


def normalised_to_pixels(u: jax.Array, size: int) -> jax.Array:
    """Normalised coordinates in [-1, 1] (image edges) -> input pixels, ``x = (u + 1) S / 2 - 0.5``.

    The edges of an ``S``-pixel image lie at pixel coordinates -0.5 and ``S - 0.5``; the centre
    u = 0 is ``(S - 1) / 2``.
    """
    return (u + 1.0) * (size / 2.0) - 0.5


def _coordinate_head(h: jax.Array, num_landmarks: int, size: int) -> jax.Array:
    """float32 dense layer to 2L normalised coordinates, returned as (B, L, 2) input pixels."""
    u = nn.Dense(2 * num_landmarks, dtype=jnp.float32, param_dtype=jnp.float32,
                 kernel_init=nn.initializers.zeros, name="coordinates")(h.astype(jnp.float32))
    return normalised_to_pixels(u.reshape(u.shape[0], num_landmarks, 2), size)


class CNN6(nn.Module):
    """The Wing paper's "CNN-6": a plain CNN on a 64 x 64 input.

    ``depth`` blocks of 3x3 conv (no bias) -> BatchNorm -> ReLU -> 2x2 max-pool with
    ``features * 2**i`` channels (paper: 5 blocks, 32/64/128/256/512, leaving 2 x 2 x 512 at a 64
    input), then dense ``hidden`` (paper: 1024) -> BatchNorm -> ReLU, then dense 2L.

    Attributes:
      num_landmarks: L.
      features: channels of the first block, doubled by each next one.
      depth: number of conv blocks; the input side must be at least ``2**depth``.
      hidden: width of the hidden dense layer.
      bn_axis_name, dtype, conv_lowering: as in :class:`~awing_jax.models.fan.FAN`.
    """

    num_landmarks: int
    features: int = 32
    depth: int = 5
    hidden: int = 1024
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_lowering: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """(B, S, S, 3) RGB in [0, 1] -> (B, L, 2) float32 input pixels."""
        size = x.shape[1]
        if size < 2**self.depth:
            raise ValueError(f"CNN6 with {self.depth} blocks needs an input of at least "
                             f"{2**self.depth} pixels, got {size}")
        dtype, axis = self.dtype, self.bn_axis_name
        h = x.astype(dtype)
        for i in range(self.depth):
            h = conv(self.features * 2**i, 3, dtype, f"conv_{i}", bias=False,
                     lowering=self.conv_lowering)(h)
            h = nn.relu(batch_norm(train, axis, dtype, f"bn_{i}")(h))
            h = nn.max_pool(h, (2, 2), strides=(2, 2))
        h = h.reshape(h.shape[0], -1)
        h = nn.Dense(self.hidden, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                     name="hidden")(h)
        h = nn.relu(batch_norm(train, axis, dtype, "hidden_bn")(h))
        return _coordinate_head(h, self.num_landmarks, size)


class Bottleneck(nn.Module):
    """ResNet bottleneck, 1x1 -> 3x3 (carrying the stride) -> 1x1 to ``4 * features``, with BN
    after each conv and a projection shortcut (1x1 conv + BN) when the shape changes (the
    "v1.5" layout of torchvision's ResNet-50).
    """

    features: int
    stride: int = 1
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_lowering: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        dtype, axis, lowering = self.dtype, self.bn_axis_name, self.conv_lowering
        h = nn.relu(batch_norm(train, axis, dtype, "bn_0")(
            conv(self.features, 1, dtype, "conv_0", bias=False, lowering=lowering)(x)))
        h = nn.relu(batch_norm(train, axis, dtype, "bn_1")(
            conv(self.features, 3, dtype, "conv_1", bias=False, lowering=lowering,
                 stride=self.stride)(h)))
        h = conv(4 * self.features, 1, dtype, "conv_2", bias=False, lowering=lowering)(h)
        h = batch_norm(train, axis, dtype, "bn_2")(h)
        shortcut = x
        if x.shape[-1] != 4 * self.features or self.stride != 1:
            shortcut = conv(4 * self.features, 1, dtype, "shortcut_conv", bias=False,
                            lowering=lowering, stride=self.stride)(x)
            shortcut = batch_norm(train, axis, dtype, "shortcut_bn")(shortcut)
        return nn.relu(h + shortcut)


class ResNet(nn.Module):
    """ResNet with bottleneck blocks regressing 2L coordinates (Wing paper's ResNet-50).

    Stem 7x7 conv stride 2 -> BN -> ReLU -> 3x3 max-pool stride 2; stage i has
    ``stage_sizes[i]`` :class:`Bottleneck` blocks of width ``features * 2**i`` (output 4x that),
    the first of stages 1.. with stride 2 on its 3x3 conv; global average pool; dense 2L.
    ``stage_sizes = (3, 4, 6, 3)``, ``features = 64`` is ResNet-50.

    Attributes:
      num_landmarks: L.
      features: stem width and first-stage bottleneck width.
      stage_sizes: blocks per stage.
      bn_axis_name, dtype, conv_lowering: as in :class:`~awing_jax.models.fan.FAN`.
    """

    num_landmarks: int
    features: int = 64
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_lowering: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """(B, S, S, 3) RGB in [0, 1] -> (B, L, 2) float32 input pixels."""
        size = x.shape[1]
        dtype, axis, lowering = self.dtype, self.bn_axis_name, self.conv_lowering
        h = conv(self.features, 7, dtype, "stem_conv", bias=False, lowering=lowering,
                 stride=2)(x.astype(dtype))
        h = nn.relu(batch_norm(train, axis, dtype, "stem_bn")(h))
        h = nn.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for i, blocks in enumerate(self.stage_sizes):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                h = Bottleneck(self.features * 2**i, stride, axis, dtype,
                               conv_lowering=lowering, name=f"stage_{i}_block_{j}")(h, train)
        return _coordinate_head(jnp.mean(h, axis=(1, 2)), self.num_landmarks, size)
