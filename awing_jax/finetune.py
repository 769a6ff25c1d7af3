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
picked (and the boundary channel kept). Without a map, a checkpoint of another point count still
starts the run: every parameter whose shape fits is loaded and the per-stack output heads (the
heatmap convolutions and their merge back into the features) start from the run's own random
initialisation; the run prints which. A run without the boundary channel takes a boundary model's
weights without the boundary's channels (its coordinate convolutions without the inputs masked by
the boundary, as if no pixel were on one). A run that resumes from its own checkpoint ignores
``init_from``.
"""

from __future__ import annotations

import os

import numpy as np
from flax import traverse_util

from awing_jax import checkpoint, crop, errors, landmark_maps
from awing_jax.landmarks import get_scheme

# Module name prefixes of the FAN whose kernels carry one channel per landmark (+ boundary):
# output channels (the heatmap convolution) and input channels (its merge back into features).
_OUTPUT_MODULES = ("heatmap_conv_",)
_INPUT_MODULES = ("merge_heatmaps_",)
# The coordinate convolutions of stacks 1.. read x and y masked by the previous boundary as their
# last two input channels (awing_jax/models/fan.py, coord_channels).
_COORD_MODULES = ("coord_conv_",)
_BOUNDARY_COORDS = 2
# What may start afresh when the landmark scheme or the boundary channel differs.
_HEAD_MODULES = _OUTPUT_MODULES + _INPUT_MODULES + _COORD_MODULES
_MAX_LISTED = 8


class InitError(errors.UserError, ValueError):
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
    elif source.num_landmarks != target.num_landmarks and announce:
        announce(f"init_from {init_from} predicts {source.num_landmarks} landmarks "
                 f"({source.name}), this run {target.num_landmarks} ({target.name}): the output "
                 f"heads start afresh (config.init_landmark_map maps channels instead; known: "
                 f"{', '.join(landmark_maps.MAPS)})")
    if not protocol_given:
        protocol = crop.check_protocol(init.get("crop_protocol", crop.DEFAULT_PROTOCOL))
        if protocol != config.get("crop_protocol", crop.DEFAULT_PROTOCOL) and announce:
            announce(f"crop protocol {protocol}, the one init_from {init_from} was trained with")
        config = config.copy_and_resolve_references()
        config.crop_protocol = protocol
    return config


def map_channels(variables: dict, indices, *, num_source: int, boundary: bool,
                 keep_boundary: bool | None = None) -> dict:
    """The FAN ``variables`` of a ``num_source``-landmark model with their landmark channels
    reduced (or reordered) to ``indices``.

    ``boundary``: the source model has the boundary channel (channel ``num_source``).
    ``keep_boundary`` (default: ``boundary``): it stays, last; False drops it, and with it the
    two boundary-masked coordinate inputs of the coordinate convolutions (a model without the
    boundary channel sees them as zero everywhere). ``indices=None`` keeps every landmark.
    """
    keep_boundary = boundary if keep_boundary is None else keep_boundary
    if keep_boundary and not boundary:
        raise ValueError("cannot keep a boundary channel the source model does not have")
    indices = range(num_source) if indices is None else indices
    keep = np.asarray(list(indices) + ([num_source] if keep_boundary else []), dtype=int)
    width = num_source + int(boundary)
    drop_coords = boundary and not keep_boundary
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
            elif (drop_coords and module.startswith(_COORD_MODULES) and module != "coord_conv_0"
                  and path[-1] == "kernel"):
                value = value[..., :-_BOUNDARY_COORDS, :]
            flat[path] = value
        out[collection] = traverse_util.unflatten_dict(flat)
    return out


def initial_variables(config, template: dict, *, announce=None) -> dict:
    """The ``{"params", "batch_stats"}`` this run starts from: ``config.init_from``'s, mapped by
    ``config.init_landmark_map``, checked leaf by leaf against ``template`` (the run's freshly
    initialised variables: same structure and shapes).

    When the run's landmark scheme or boundary channel differs from the checkpoint's, the
    output-head leaves that still do not fit (the heads of another point count without a map, or
    a boundary channel the checkpoint lacks) keep ``template``'s values; ``announce`` (a print
    function) is told which. Any other leaf that does not fit is an :class:`InitError`.
    """
    init_from = config.init_from
    init_config, variables = load(init_from)
    name = config.get("init_landmark_map", "")
    source_boundary = bool(init_config.model.get("boundary", False))
    target_boundary = bool(config.model.get("boundary", False))
    source_points = get_scheme(init_config.scheme).num_landmarks
    target_points = get_scheme(config.scheme).num_landmarks
    is_fan = init_config.model.name == "fan" and config.model.name == "fan"
    if name and not is_fan:
        raise InitError(f"init_landmark_map needs a heatmap model (fan); init_from "
                        f"{init_from} is a {init_config.model.name}")
    indices = landmark_maps.get_map(name).indices if name else None
    if is_fan and (indices is not None or source_boundary != target_boundary):
        variables = map_channels(variables, indices, num_source=source_points,
                                 boundary=source_boundary,
                                 keep_boundary=source_boundary and target_boundary)
    # Heads may start afresh only where the run's outputs differ from the checkpoint's.
    heads_may_differ = is_fan and (
        (indices is None and source_points != target_points)
        or (target_boundary and not source_boundary))
    problems, fresh = [], []
    for collection in ("params", "batch_stats"):
        want = traverse_util.flatten_dict(template.get(collection) or {})
        have = traverse_util.flatten_dict(variables.get(collection) or {})
        for path in sorted(set(want) | set(have)):
            key = f"{collection}/{'/'.join(path)}"
            fits = path in have and path in want and np.shape(have[path]) == np.shape(want[path])
            if fits:
                continue
            if (heads_may_differ and path in want and len(path) > 1
                    and path[-2].startswith(_HEAD_MODULES)):
                have[path] = np.asarray(want[path])
                fresh.append(key)
            elif path not in have:
                problems.append(f"{key} missing")
            elif path not in want:
                problems.append(f"{key} not in this run's model")
            else:
                problems.append(f"{key} {np.shape(have[path])} vs {np.shape(want[path])}")
        if have:
            variables = {**variables, collection: traverse_util.unflatten_dict(have)}
    if problems:
        more = f" ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise InitError(f"init_from {init_from}: its weights do not fit this config's model "
                        f"(layout: model.*, scheme): {'; '.join(problems[:_MAX_LISTED])}{more}")
    if fresh and announce:
        modules = sorted({key.split("/")[1] for key in fresh})
        announce(f"starting afresh (they do not fit init_from {init_from}): {', '.join(modules)}")
    return {k: _to_jax(variables[k]) for k in ("params", "batch_stats")
            if template.get(k) is not None}


def _to_jax(tree):
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float32), tree)


def init_state(state, config, *, announce=None):
    """A fresh TrainState with ``config.init_from``'s weights and a new optimiser state
    (``announce``: see :func:`initial_variables`)."""
    variables = initial_variables(
        config, {"params": state.params, "batch_stats": state.batch_stats}, announce=announce)
    params = variables["params"]
    return state.replace(params=params, batch_stats=variables.get("batch_stats"),
                         opt_state=state.tx.init(params))
