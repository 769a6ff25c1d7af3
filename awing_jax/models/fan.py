"""The stacked-hourglass "FAN" of the AWing paper, with CoordConv and a boundary channel.

Layout (docs/models.md): a pre-activation stem at stride 4 (:attr:`FAN.heatmap_stride`), then
``num_stacks`` hourglasses. Each stack appends coordinate channels to its input features
(CoordConv), mixes them back to ``features`` with a 1x1 conv, runs an hourglass of ``depth`` levels
and a head that predicts L landmark heatmaps plus one boundary heatmap (AWing paper, Sec. 4.3). From
the second stack on, the coordinate channels also carry x and y masked by the previous stack's
boundary heatmap, which tells the network where the face's edges are.

CoordConv channels, appended after the input channels in this order (see :func:`coord_channels`):

    x      varies along columns (image x), -1 at the left pixel centre, +1 at the right one
    y      varies along rows (image y), -1 at the top, +1 at the bottom
    r      sqrt(x^2 + y^2) / max, in [0, 1]
    x_b    x where clip(previous boundary, 0, 1) > 0.05, else 0   (stacks 1.. only)
    y_b    y under the same mask                                    (stacks 1.. only)

The reference PyTorch model appends (xx, yy, rr, xx_b, yy_b) where its "xx" varies along rows and
"yy" along columns, i.e. (y, x, r, y_b, x_b) here: a weight converter swaps input channels
C+0 <-> C+1 and C+3 <-> C+4 (C = 3 in the stem, ``features`` before each hourglass).

Parameter paths and the reference state-dict keys they hold (flax kernels are HWIO, the
reference's OIHW; transpose (2, 3, 1, 0)); BatchNorm ``scale``/``bias`` <- ``weight``/``bias``,
batch_stats ``mean``/``var`` <- ``running_mean``/``running_var``:

    stem_conv                       conv1.conv          7x7 stride 2, bias, input RGB + x, y, r
    stem_bn                         bn1
    stem_block_0 / _1 / _2          conv2 / conv3 / conv4
    coord_conv_{i}                  m{i}.coordconv.conv  1x1, bias
    hourglass_{i}/skip_{level}      m{i}.b1_{level}      upper branch, level = depth .. 1
    hourglass_{i}/down_{level}      m{i}.b2_{level}      first block after pooling
    hourglass_{i}/bottom            m{i}.b2_plus_1       extra block at the deepest level
    hourglass_{i}/up_{level}        m{i}.b3_{level}      after the recursion, before upsampling
    head_block_{i}                  top_m_{i}
    head_conv_{i}                   conv_last{i}        1x1, bias
    head_bn_{i}                     bn_end{i}
    heatmap_conv_{i}                l{i}                1x1, bias, to L + 1 channels
    merge_features_{i}              bl{i}               1x1, bias (all stacks but the last)
    merge_heatmaps_{i}              al{i}               1x1, bias (all stacks but the last)

Inside every :class:`ConvBlock`:

    bn_0, conv_0, bn_1, conv_1, bn_2, conv_2     bn1, conv1, bn2, conv2, bn3, conv3
    downsample_bn, downsample_conv               downsample.0, downsample.2   (in != out only)

Level ``depth`` is the outermost (full resolution) and level 1 the deepest, as in the reference.

Convolutions and BatchNorm come from :mod:`awing_jax.models.common`; every module takes the
model's ``conv_lowering`` (:mod:`awing_jax.models.conv`). BatchNorm follows PyTorch's defaults
(eps 1e-5, momentum 0.1, i.e. flax momentum 0.9). One difference remains: PyTorch updates its
running variance with the unbiased batch variance, flax with the biased one (a factor
n / (n - 1), n = B*H*W per channel, negligible at real sizes).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from awing_jax.models.common import batch_norm, conv

# A pixel belongs to the boundary when the previous stack's clipped boundary heatmap exceeds this.
BOUNDARY_THRESHOLD = 0.05


def coord_channels(height: int, width: int, boundary=None) -> jax.Array:
    """CoordConv channels for an ``height x width`` feature map.

    Args:
      height, width: spatial size.
      boundary: optional (B, H, W) boundary heatmap of the previous stack. Only where
        ``clip(boundary, 0, 1) > 0.05`` does it let x and y through; no gradient flows into it.

    Returns:
      (1, H, W, 3) channels (x, y, r), or (B, H, W, 5) channels (x, y, r, x_b, y_b) with a
      boundary. float32.
    """
    xs = jnp.linspace(-1.0, 1.0, width, dtype=jnp.float32)
    ys = jnp.linspace(-1.0, 1.0, height, dtype=jnp.float32)
    x, y = jnp.meshgrid(xs, ys, indexing="xy")  # (H, W); x changes along columns
    r = jnp.sqrt(x**2 + y**2)
    coords = jnp.stack([x, y, r / jnp.max(r)], axis=-1)[None]
    if boundary is None:
        return coords
    on_boundary = jax.lax.stop_gradient(jnp.clip(boundary, 0.0, 1.0) > BOUNDARY_THRESHOLD)
    masked = jnp.where(on_boundary[..., None], coords[..., :2], 0.0)
    coords = jnp.broadcast_to(coords, (*masked.shape[:3], 3))
    return jnp.concatenate([coords, masked], axis=-1)


def add_coords(x: jax.Array, boundary=None) -> jax.Array:
    """Appends :func:`coord_channels` to the (B, H, W, C) input, in its dtype."""
    coords = coord_channels(x.shape[1], x.shape[2], boundary).astype(x.dtype)
    coords = jnp.broadcast_to(coords, (x.shape[0], *coords.shape[1:]))
    return jnp.concatenate([x, coords], axis=-1)


def _avg_pool(x: jax.Array) -> jax.Array:
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


def _upsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 upsampling of (B, H, W, C)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class ConvBlock(nn.Module):
    """Pre-activation residual block whose three 3x3 convs give out/2, out/4, out/4 channels.

    ``y = concat(o1, o2, o3) + shortcut`` where each ``o`` is ``conv(relu(bn(previous)))`` and the
    shortcut is the input, or ``conv1x1(relu(bn(x)))`` when the channel count changes.
    """

    features: int
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_lowering: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.features % 4:
            raise ValueError(f"ConvBlock features must be divisible by 4, got {self.features}")
        widths = (self.features // 2, self.features // 4, self.features // 4)
        outputs = []
        h = x
        for k, width in enumerate(widths):
            h = nn.relu(batch_norm(train, self.bn_axis_name, self.dtype, f"bn_{k}")(h))
            h = conv(width, 3, self.dtype, f"conv_{k}", bias=False,
                     lowering=self.conv_lowering)(h)
            outputs.append(h)
        shortcut = x
        if x.shape[-1] != self.features:
            norm = batch_norm(train, self.bn_axis_name, self.dtype, "downsample_bn")
            project = conv(self.features, 1, self.dtype, "downsample_conv", bias=False,
                           lowering=self.conv_lowering)
            shortcut = project(nn.relu(norm(x)))
        return jnp.concatenate(outputs, axis=-1) + shortcut


class Hourglass(nn.Module):
    """Hourglass of ``depth`` levels: each level halves the resolution by 2x2 average pooling.

    Level ``depth`` works at the input resolution, level 1 at ``1 / 2**(depth - 1)`` of it; the
    input side must be divisible by ``2**depth``.
    """

    depth: int = 4
    features: int = 256
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_lowering: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        def block(name: str) -> ConvBlock:
            return ConvBlock(self.features, self.bn_axis_name, self.dtype,
                             conv_lowering=self.conv_lowering, name=name)

        def level(n: int, h: jax.Array) -> jax.Array:
            skip = block(f"skip_{n}")(h, train)
            low = block(f"down_{n}")(_avg_pool(h), train)
            low = level(n - 1, low) if n > 1 else block("bottom")(low, train)
            low = block(f"up_{n}")(low, train)
            return skip + _upsample(low)

        return level(self.depth, x)


class FAN(nn.Module):
    """Stacked hourglass network with CoordConv and boundary heatmap (AWing paper, Sec. 4).

    Attributes:
      num_landmarks: L.
      num_stacks: hourglasses; every one's output is supervised.
      features: channel width of the hourglasses (256 in the paper; divisible by 4).
      depth: hourglass levels (4 in the paper: 64 -> 4 px at a 256 input).
      coordconv: append coordinate channels before the stem conv and before each hourglass.
      boundary: predict a boundary heatmap as channel L and, with ``coordconv``, use it to mask
        the coordinate channels of the next stack.
      bn_axis_name: pmap/shard_map axis over which BatchNorm statistics are averaged, so that a
        batch split over devices normalises like the whole batch on one device.
      dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters stay float32.
      conv_lowering: how convolutions run, "xla", "matmul", "winograd" or "auto"
        (:mod:`awing_jax.models.conv`); the parameters and the function do not depend on it.
      heatmap_stride: (class constant) input pixels per heatmap pixel: the stem's stride-2
        convolution and its 2x2 pooling. Every consumer of the heatmaps reads it from here.
    """

    heatmap_stride: ClassVar[int] = 4

    num_landmarks: int
    num_stacks: int = 4
    features: int = 256
    depth: int = 4
    coordconv: bool = True
    boundary: bool = True
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    conv_lowering: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> list[jax.Array]:
        """Heatmaps of every stack.

        Args:
          x: (B, S, S, 3) RGB in [0, 1]; S divisible by ``heatmap_stride * 2**depth``.
          train: use batch statistics in BatchNorm (and update ``batch_stats``).

        Returns:
          ``num_stacks`` float32 arrays (B, S/s, S/s, L + 1) (s = ``heatmap_stride``), the last
          channel the boundary
          (L channels when ``boundary`` is False).
        """
        dtype, axis, lowering = self.dtype, self.bn_axis_name, self.conv_lowering

        def block(features: int, name: str) -> ConvBlock:
            return ConvBlock(features, axis, dtype, conv_lowering=lowering, name=name)

        def conv1x1(features: int, name: str) -> nn.Conv:
            return conv(features, 1, dtype, name, bias=True, lowering=lowering)

        h = x.astype(dtype)
        if self.coordconv:
            h = add_coords(h)
        h = conv(64, 7, dtype, "stem_conv", bias=True, lowering=lowering, stride=2)(h)
        h = nn.relu(batch_norm(train, axis, dtype, "stem_bn")(h))
        h = _avg_pool(block(128, "stem_block_0")(h, train))
        h = block(128, "stem_block_1")(h, train)
        features = block(self.features, "stem_block_2")(h, train)

        out_channels = self.num_landmarks + 1 if self.boundary else self.num_landmarks
        outputs = []
        heatmaps = None
        for i in range(self.num_stacks):
            h = features
            if self.coordconv:
                boundary = heatmaps[..., -1] if self.boundary and heatmaps is not None else None
                h = conv1x1(self.features, f"coord_conv_{i}")(add_coords(h, boundary))
            h = Hourglass(self.depth, self.features, axis, dtype, conv_lowering=lowering,
                          name=f"hourglass_{i}")(h, train)
            h = block(self.features, f"head_block_{i}")(h, train)
            h = conv1x1(self.features, f"head_conv_{i}")(h)
            h = nn.relu(batch_norm(train, axis, dtype, f"head_bn_{i}")(h))
            heatmaps = conv1x1(out_channels, f"heatmap_conv_{i}")(h)
            outputs.append(heatmaps.astype(jnp.float32))
            if i < self.num_stacks - 1:
                features = (
                    features
                    + conv1x1(self.features, f"merge_features_{i}")(h)
                    + conv1x1(self.features, f"merge_heatmaps_{i}")(heatmaps)
                )
        return outputs
