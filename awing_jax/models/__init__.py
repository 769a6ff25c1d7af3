"""Face-alignment networks, built from a run's config."""

from __future__ import annotations

import jax.numpy as jnp

from awing_jax.landmarks import get_scheme

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def create_model(config, *, bn_axis_name: str | None = "batch"):
    """The model named by ``config.model.name``, for ``config.scheme``'s landmarks.

    ``bn_axis_name`` is the pmap axis BatchNorm averages its batch statistics over in training;
    inference (running averages) never uses it, so one module serves both.
    """
    from awing_jax.models.fan import FAN

    mc = config.model
    num_landmarks = get_scheme(config.scheme).num_landmarks
    if mc.name == "fan":
        return FAN(num_landmarks=num_landmarks, num_stacks=mc.num_stacks, features=mc.features,
                   depth=mc.depth, coordconv=mc.coordconv, boundary=mc.boundary,
                   bn_axis_name=bn_axis_name, dtype=DTYPES[config.dtype])
    raise ValueError(f"unknown model {mc.name!r}; known: 'fan'")
