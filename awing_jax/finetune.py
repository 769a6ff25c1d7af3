"""Starting a training run from another run's (or converted) weights.

    python train.py --config configs/wflw.py --workdir runs/wflw_ft \\
        --config.init_from=runs/wflw_reference
    python train.py --config configs/w300.py --workdir runs/w300_ft \\
        --config.init_from=runs/wflw_reference --config.init_landmark_map=wflw_to_300w

``config.init_from`` names a workdir; its best checkpoint (the latest when none is ranked, as for
converted weights) gives the new run's parameters and BatchNorm statistics. The optimiser starts
afresh, at step 0. The run keeps the checkpoint's crop protocol (``awing_wflw`` for converted
weights: the crops the network was trained on) unless the run's config sets one itself
(:func:`resolve_config`). ``config.init_landmark_map`` maps a checkpoint of another landmark
scheme onto the run's (:mod:`awing_jax.landmark_maps`): the output channels of a heatmap model are
picked (and the boundary channel kept). A run that resumes from its own checkpoint ignores
``init_from``.
"""

from __future__ import annotations

import os

import numpy as np
from flax import traverse_util

from awing_jax import checkpoint, crop, landmark_maps
from awing_jax.landmarks import get_scheme

# Module name prefixes of the FAN whose kernels carry one channel per landmark (+ boundary):
# output channels (the heatmap convolution) and input channels (its merge back into features).
_OUTPUT_MODULES = ("heatmap_conv_",)
_INPUT_MODULES = ("merge_heatmaps_",)
_MAX_LISTED = 8


class InitError(ValueError):
    """``config.init_from`` cannot start this run: no checkpoint, or weights that do not fit."""


def load(init_from: str, *, weights: bool = True):
    """``(config, {"params", "batch_stats"} or None)`` of the checkpoint ``init_from`` names:
    its best step, else its latest."""
    if not os.path.isdir(init_from):
        raise InitError(f"init_from {init_from}: no such directory")
    manager = checkpoint.create_manager(init_from, read_only=True)
    try:
        step = checkpoint.resolve_step(manager, "best")
        config = checkpoint.restore_config(manager, step)
        variables = checkpoint.restore_variables(manager, step) if weights else None
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise InitError(f"init_from {init_from}: {e}") from None
    return config, variables


def resolve_config(config, *, protocol_given: bool, announce=None):
    """``config`` with the crop protocol of ``config.init_from``'s checkpoint, unless
    ``protocol_given`` (the run set ``crop_protocol`` itself); checks the landmark map.

    Returns ``config`` unchanged without ``init_from``. Raises :class:`InitError`.
    """
    init_from = config.get("init_from", "")
    if not init_from:
        return config
    init, _ = load(init_from, weights=False)
    source = get_scheme(init.scheme)
    target = get_scheme(config.scheme)
    name = config.get("init_landmark_map", "")
    if name:
        try:
            found = landmark_maps.get_map(name)
        except ValueError as e:
            raise InitError(f"init_landmark_map: {e}") from None
        if (found.source, found.target) != (source.name, target.name):
            raise InitError(f"init_landmark_map {name!r} maps {found.source} to {found.target}, "
                            f"but init_from {init_from} is {source.name} and this run "
                            f"{target.name}")
    elif source.num_landmarks != target.num_landmarks:
        raise InitError(f"init_from {init_from} predicts {source.num_landmarks} landmarks "
                        f"({source.name}), this run {target.num_landmarks} ({target.name}); set "
                        f"config.init_landmark_map (known: {', '.join(landmark_maps.MAPS)})")
    if not protocol_given:
        protocol = crop.check_protocol(init.get("crop_protocol", crop.DEFAULT_PROTOCOL))
        if protocol != config.get("crop_protocol", crop.DEFAULT_PROTOCOL) and announce:
            announce(f"crop protocol {protocol}, the one init_from {init_from} was trained with")
        config = config.copy_and_resolve_references()
        config.crop_protocol = protocol
    return config


def map_channels(variables: dict, indices, *, num_source: int, boundary: bool) -> dict:
    """The FAN ``variables`` of a ``num_source``-landmark model with their landmark channels
    reduced (or reordered) to ``indices`` (the boundary channel, when there is one, stays last)."""
    keep = np.asarray(list(indices) + ([num_source] if boundary else []))
    width = num_source + int(boundary)
    out = {}
    for collection, tree in variables.items():
        flat = traverse_util.flatten_dict(tree)
        for path, value in flat.items():
            value = np.asarray(value)
            module = path[-2] if len(path) > 1 else ""
            if module.startswith(_OUTPUT_MODULES) and value.shape[-1] == width:
                value = value[..., keep]
            elif (module.startswith(_INPUT_MODULES) and path[-1] == "kernel"
                  and value.shape[-2] == width):
                value = value[..., keep, :]
            flat[path] = value
        out[collection] = traverse_util.unflatten_dict(flat)
    return out


def initial_variables(config, template: dict) -> dict:
    """The ``{"params", "batch_stats"}`` this run starts from: ``config.init_from``'s, mapped by
    ``config.init_landmark_map``, checked leaf by leaf against ``template`` (the run's freshly
    initialised variables: same structure and shapes)."""
    init_from = config.init_from
    init_config, variables = load(init_from)
    name = config.get("init_landmark_map", "")
    if name:
        if init_config.model.name != "fan":
            raise InitError(f"init_landmark_map needs a heatmap model (fan); init_from "
                            f"{init_from} is a {init_config.model.name}")
        variables = map_channels(
            variables, landmark_maps.get_map(name).indices,
            num_source=get_scheme(init_config.scheme).num_landmarks,
            boundary=bool(init_config.model.boundary))
    problems = []
    for collection in ("params", "batch_stats"):
        want = traverse_util.flatten_dict(template.get(collection) or {})
        have = traverse_util.flatten_dict(variables.get(collection) or {})
        for path in sorted(set(want) | set(have)):
            key = f"{collection}/{'/'.join(path)}"
            if path not in have:
                problems.append(f"{key} missing")
            elif path not in want:
                problems.append(f"{key} not in this run's model")
            elif np.shape(have[path]) != np.shape(want[path]):
                problems.append(f"{key} {np.shape(have[path])} vs {np.shape(want[path])}")
    if problems:
        more = f" ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise InitError(f"init_from {init_from}: its weights do not fit this config's model "
                        f"(layout: model.*, scheme): {'; '.join(problems[:_MAX_LISTED])}{more}")
    return {k: _to_jax(variables[k]) for k in ("params", "batch_stats")
            if template.get(k) is not None}


def _to_jax(tree):
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float32), tree)


def init_state(state, config):
    """A fresh TrainState with ``config.init_from``'s weights and a new optimiser state."""
    variables = initial_variables(
        config, {"params": state.params, "batch_stats": state.batch_stats})
    params = variables["params"]
    return state.replace(params=params, batch_stats=variables.get("batch_stats"),
                         opt_state=state.tx.init(params))
