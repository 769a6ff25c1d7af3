"""Face-alignment networks, built from a run's config.

Two kinds, told apart by :func:`predicts_coordinates`: heatmap models ("fan") return a list of
per-stack (B, H, W, C) heatmaps; coordinate regressors ("cnn6", "resnet50") return (B, L, 2)
landmarks in input pixels.
"""

from __future__ import annotations

import jax.numpy as jnp

from awing_jax.landmarks import get_scheme
from awing_jax.models.conv import conv_function

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# The lowering of a stored config that predates ``model.conv_lowering``.
DEFAULT_CONV_LOWERING = "auto"
HEATMAP_MODELS = ("fan",)
REGRESSION_MODELS = ("cnn6", "resnet50")


def predicts_coordinates(config) -> bool:
    """Whether ``config.model.name`` is a coordinate regressor (else a heatmap model)."""
    name = config.model.name
    if name not in HEATMAP_MODELS + REGRESSION_MODELS:
        raise ValueError(f"unknown model {name!r}; known: {HEATMAP_MODELS + REGRESSION_MODELS}")
    return name in REGRESSION_MODELS


def create_model(config, *, bn_axis_name: str | None = "batch", conv_lowering: str | None = None):
    """The model named by ``config.model.name``, for ``config.scheme``'s landmarks.

    ``bn_axis_name`` is the pmap axis BatchNorm averages its batch statistics over in training;
    inference (running averages) never uses it, so one module serves both.

    ``conv_lowering`` (:data:`awing_jax.models.conv.LOWERINGS`) overrides
    ``config.model.conv_lowering``, for programs that choose their own (evaluation, prediction,
    export); a stored config without that field (older checkpoints, converted weights) means
    ``DEFAULT_CONV_LOWERING``. It never changes the parameters.

    Reads ``model.features``, ``model.conv_lowering`` and, per model: "fan" ``num_stacks``,
    ``depth`` (hourglass levels), ``coordconv``, ``boundary``; "cnn6" ``depth`` (conv blocks),
    ``hidden``; "resnet50" ``stage_sizes``.
    """
    from awing_jax.models.fan import FAN
    from awing_jax.models.regression import CNN6, ResNet

    mc = config.model
    num_landmarks = get_scheme(config.scheme).num_landmarks
    lowering = conv_lowering or mc.get("conv_lowering", DEFAULT_CONV_LOWERING)
    conv_function(lowering)  # an unknown name fails here, naming the choices
    common = dict(num_landmarks=num_landmarks, features=mc.features, bn_axis_name=bn_axis_name,
                  dtype=DTYPES[config.dtype], conv_lowering=lowering)
    if mc.name == "fan":
        return FAN(num_stacks=mc.num_stacks, depth=mc.depth, coordconv=mc.coordconv,
                   boundary=mc.boundary, **common)
    if mc.name == "cnn6":
        return CNN6(depth=mc.depth, hidden=mc.hidden, **common)
    if mc.name == "resnet50":
        return ResNet(stage_sizes=tuple(mc.stage_sizes), **common)
    raise ValueError(f"unknown model {mc.name!r}; known: {HEATMAP_MODELS + REGRESSION_MODELS}")
