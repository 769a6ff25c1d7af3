"""Layers shared by the FAN (:mod:`awing_jax.models.fan`) and the coordinate regressors
(:mod:`awing_jax.models.regression`): convolutions with PyTorch's padding and a chosen lowering,
BatchNorm with PyTorch's defaults, and a parameter count.

docs/models.md describes the networks built from them.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from awing_jax.models.conv import conv_function

# PyTorch BatchNorm2d defaults: momentum 0.1 on the new statistic = flax momentum 0.9 on the old.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def count_params(tree) -> int:
    """Number of scalars in a pytree of arrays or ``jax.ShapeDtypeStruct`` (from eval_shape)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))


@functools.lru_cache(maxsize=32)
def variable_shapes(model: nn.Module, input_size: int) -> dict:
    """``model``'s variables for an ``input_size``² input as ``jax.ShapeDtypeStruct`` leaves,
    from one trace of ``model.init`` per model and size in a process (read only)."""
    return jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((1, input_size, input_size, 3)), train=False))


def random_variables(model: nn.Module, input_size: int, seed: int = 0) -> dict:
    """Variables of ``model`` for an ``input_size``² input, drawn on the host with NumPy, for
    benchmarks and tests: kernels ~ N(0, 1 / fan_in) (activations of order one), BatchNorm scales
    and variances uniform in [0.8, 1.2], every other leaf ~ N(0, 0.1²).

    Only the initialiser's shapes are traced (``jax.eval_shape``); nothing is compiled. Compiling
    ``model.init`` costs seconds for a tiny FAN and about half a minute for the paper's FAN-4 on a
    CPU (BENCHMARKS.md, "Initialiser compile"), for values a speed measurement does not depend on.
    Training starts from ``model.init``'s values (:func:`awing_jax.trainer.init_variables`).
    """
    shapes = variable_shapes(model, input_size)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return (rng.normal(size=leaf.shape) / np.sqrt(math.prod(leaf.shape[:-1])))\
                .astype(np.float32)
        if name in ("scale", "var"):
            return rng.uniform(0.8, 1.2, leaf.shape).astype(np.float32)
        return (0.1 * rng.normal(size=leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def conv(features: int, kernel: int, dtype, name: str, *, bias: bool, lowering: str,
         stride: int = 1) -> nn.Conv:
    """A square convolution with PyTorch's symmetric padding ``kernel // 2`` (flax's "SAME" pads
    stride-2 convolutions unevenly), float32 parameters, computed in ``dtype``.

    ``lowering`` is the model's ``conv_lowering`` (:mod:`awing_jax.models.conv`); it changes how
    the convolution runs, not its parameters or (beyond float rounding) its result.
    """
    pad = kernel // 2
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
        use_bias=bias, dtype=dtype, param_dtype=jnp.float32, name=name,
        conv_general_dilated=conv_function(lowering),
    )


def batch_norm(train: bool, axis_name: str | None, dtype, name: str) -> nn.BatchNorm:
    """BatchNorm with PyTorch's eps and momentum; batch statistics in training (averaged over
    ``axis_name`` when given), running averages otherwise."""
    return nn.BatchNorm(
        use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
        axis_name=axis_name, dtype=dtype, param_dtype=jnp.float32, name=name,
    )
