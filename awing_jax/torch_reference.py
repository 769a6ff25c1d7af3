"""The FAN of :mod:`awing_jax.models.fan` in PyTorch, with the reference state-dict key names.

For tests (weight-conversion parity) and benchmarks (the same network timed in both frameworks);
training and inference in awing-jax never import it. The module tree spells the keys of the
reference model exactly (docs/models.md), so ``FAN(...).state_dict()`` has the layout of the
released weights: ``conv1.conv.*`` (the CoordConv stem), ``bn1``, ``conv2``..``conv4``,
``m{i}.coordconv.conv``, ``m{i}.b1_{level}`` ... ``top_m_{i}``, ``conv_last{i}``, ``bn_end{i}``,
``l{i}``, ``bl{i}``, ``al{i}``.

CoordConv channels follow the reference, appended after the input channels in the order
(xx, yy, rr, xx_b, yy_b) where "xx" varies along rows (image y) and "yy" along columns
(image x): the (y, x, r, y_b, x_b) of :func:`awing_jax.models.fan.coord_channels`.
Tensors are NCHW.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# A pixel belongs to the boundary when the previous stack's clipped boundary heatmap exceeds this.
BOUNDARY_THRESHOLD = 0.05


def add_coords(x: torch.Tensor, boundary: torch.Tensor | None = None) -> torch.Tensor:
    """Appends (xx, yy, rr) and, given a (B, 1, H, W) ``boundary``, (xx_b, yy_b) to (B, C, H, W).

    ``xx`` runs from -1 at the top row to +1 at the bottom one, ``yy`` from -1 at the left column
    to +1 at the right one, ``rr = sqrt(xx^2 + yy^2) / max``. The masked copies keep ``xx`` and
    ``yy`` where ``clamp(boundary, 0, 1) > 0.05`` and are 0 elsewhere.
    """
    batch, _, height, width = x.shape
    rows = torch.linspace(-1.0, 1.0, height, dtype=x.dtype, device=x.device)
    cols = torch.linspace(-1.0, 1.0, width, dtype=x.dtype, device=x.device)
    xx, yy = torch.meshgrid(rows, cols, indexing="ij")  # xx changes along rows
    rr = torch.sqrt(xx**2 + yy**2)
    coords = torch.stack([xx, yy, rr / rr.max()])[None].expand(batch, -1, -1, -1)
    channels = [x, coords]
    if boundary is not None:
        on_boundary = torch.clamp(boundary.detach(), 0.0, 1.0) > BOUNDARY_THRESHOLD
        channels.append(torch.where(on_boundary, coords[:, :2], torch.zeros_like(coords[:, :2])))
    return torch.cat(channels, dim=1)


class CoordConv(nn.Module):
    """A conv over the input plus its coordinate channels (3, or 5 ``with_boundary``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 *, with_boundary: bool = False):
        super().__init__()
        self.with_boundary = with_boundary
        extra = 5 if with_boundary else 3
        self.conv = nn.Conv2d(in_channels + extra, out_channels, kernel_size, stride=stride,
                              padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, boundary: torch.Tensor | None = None) -> torch.Tensor:
        if self.with_boundary != (boundary is not None):
            raise ValueError("a boundary CoordConv needs the previous boundary, and only it does")
        return self.conv(add_coords(x, boundary))


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


class ConvBlock(nn.Module):
    """Pre-activation block: three 3x3 convs to out/2, out/4, out/4 channels, concatenated, plus
    the input or, when the width changes, ``downsample`` = BN -> ReLU -> 1x1 conv of it."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        half, quarter = out_channels // 2, out_channels // 4
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, half)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = _conv3x3(half, quarter)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = _conv3x3(quarter, quarter)
        self.downsample = None
        if in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_channels), nn.ReLU(),
                nn.Conv2d(in_channels, out_channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = self.conv1(F.relu(self.bn1(x)))
        o2 = self.conv2(F.relu(self.bn2(o1)))
        o3 = self.conv3(F.relu(self.bn3(o2)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat([o1, o2, o3], dim=1) + shortcut


class HourGlass(nn.Module):
    """CoordConv (``coordconv``) then an hourglass of ``depth`` levels, ``depth`` the outermost.

    Level n: ``b1_n`` on the full resolution; ``b2_n`` after 2x2 average pooling, then level
    n - 1 (or ``b2_plus_1`` at the bottom), ``b3_n``, nearest x2 upsampling, added to ``b1_n``.
    """

    def __init__(self, depth: int, features: int, *, with_boundary: bool):
        super().__init__()
        self.depth = depth
        self.coordconv = CoordConv(features, features, 1, with_boundary=with_boundary)
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
            if level == 1:
                self.add_module("b2_plus_1", ConvBlock(features, features))
            self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self._modules[f"b1_{level}"](x)
        lower = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        if level > 1:
            lower = self._level(level - 1, lower)
        else:
            lower = self._modules["b2_plus_1"](lower)
        lower = self._modules[f"b3_{level}"](lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor, boundary: torch.Tensor | None = None) -> torch.Tensor:
        return self._level(self.depth, self.coordconv(x, boundary))


class FAN(nn.Module):
    """Stacked hourglasses with CoordConv and a boundary channel (L + 1 output channels).

    ``forward(x)`` takes (B, 3, S, S) RGB in [0, 1], S divisible by ``4 * 2**depth``, and returns
    the ``num_modules`` stack outputs, each (B, L + 1, S/4, S/4), the boundary last.
    """

    def __init__(self, num_modules: int, num_landmarks: int, features: int = 256,
                 depth: int = 4):
        super().__init__()
        self.num_modules = num_modules
        self.conv1 = CoordConv(3, 64, 7, stride=2)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, features)
        for i in range(num_modules):
            self.add_module(f"m{i}", HourGlass(depth, features, with_boundary=i > 0))
            self.add_module(f"top_m_{i}", ConvBlock(features, features))
            self.add_module(f"conv_last{i}", nn.Conv2d(features, features, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(features))
            self.add_module(f"l{i}", nn.Conv2d(features, num_landmarks + 1, 1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(features, features, 1))
                self.add_module(f"al{i}", nn.Conv2d(num_landmarks + 1, features, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        features = self.conv4(self.conv3(x))
        outputs = []
        heatmaps = None
        for i in range(self.num_modules):
            boundary = None if heatmaps is None else heatmaps[:, -1:]
            h = self._modules[f"m{i}"](features, boundary)
            h = self._modules[f"top_m_{i}"](h)
            h = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](h)))
            heatmaps = self._modules[f"l{i}"](h)
            outputs.append(heatmaps)
            if i < self.num_modules - 1:
                features = (features + self._modules[f"bl{i}"](h)
                            + self._modules[f"al{i}"](heatmaps))
        return outputs


def count_params(model: nn.Module) -> int:
    """Trainable scalars (conv weights and biases, BN weights and biases; no running statistics)."""
    return sum(p.numel() for p in model.parameters())
