"""Orbax checkpoints of a training run: model state, data-iterator state and the run's config.

Layout: ``WORKDIR/checkpoints/<step>/{state,data,config}``. ``state`` is the unreplicated
:class:`awing_jax.trainer.TrainState` (one written on 8 devices restores on 1), ``data`` the
grain iterator state of each host, ``config`` the run's ConfigDict as JSON so evaluation and
prediction rebuild the same model; it is the run's only copy of its config. The manager keeps the
``keep_checkpoints`` latest checkpoints and the one with the lowest validation NME
(``metrics={"nme": ...}`` at save time).
"""

from __future__ import annotations

import json
import os

import grain
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

CHECKPOINT_DIR = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
    """Orbax needs absolute paths; a relative workdir is resolved against the current directory."""
    return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def create_manager(workdir: str, *, read_only: bool = False,
                   keep_checkpoints: int = 1) -> ocp.CheckpointManager:
    """A manager keeping the ``keep_checkpoints`` latest checkpoints and the best by validation
    NME (lowest), which may be one of them.

    Orbax's ``max_to_keep`` is deprecated in favour of a preservation policy: ``LatestN`` is its
    equivalent here. Training passes ``config.keep_checkpoints``; readers need no value.
    """
    if keep_checkpoints < 1:
        raise ValueError(f"keep_checkpoints must be at least 1, got {keep_checkpoints}")
    options = ocp.CheckpointManagerOptions(
        best_fn=lambda metrics: metrics["nme"],
        best_mode="min",
        preservation_policy=ocm.AnyPreservationPolicy([
            ocm.LatestN(n=keep_checkpoints),
            ocm.BestN(get_metric_fn=lambda metrics: metrics["nme"], reverse=True, n=1,
                      keep_checkpoints_without_metrics=False),
        ]),
        create=not read_only,
        read_only=read_only,
    )
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save(manager: ocp.CheckpointManager, step: int, state, iterator, config,
         metrics: dict | None = None) -> None:
    """Saves the unreplicated ``state``, the data ``iterator`` state and ``config`` at ``step``."""
    items = {
        "state": ocp.args.StandardSave(state),
        "config": ocp.args.JsonSave(json.loads(config.to_json())),
    }
    if iterator is not None:
        items["data"] = grain.checkpoint.CheckpointSave(iterator)
    manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)


def resolve_step(manager: ocp.CheckpointManager, which: str | int) -> int:
    """``"latest"``, ``"best"`` or a step number -> an existing step, or a clear error."""
    steps = list(manager.all_steps())
    where = manager.directory
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {where}")
    if which == "latest":
        return manager.latest_step()
    if which == "best":
        best = manager.best_step()
        return manager.latest_step() if best is None else best
    try:
        step = int(which)
    except ValueError:
        raise ValueError(f"checkpoint must be 'best', 'latest' or a step, got {which!r}") from None
    if step not in steps:
        raise FileNotFoundError(f"no checkpoint for step {step} in {where}; have {sorted(steps)}")
    return step


def restore_config(manager: ocp.CheckpointManager, step: int) -> ml_collections.ConfigDict:
    """The run's config; one saved before crop protocols existed gets ``crop_protocol``
    ``"face_square"``, the crop it was trained and evaluated with."""
    restored = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    config = ml_collections.ConfigDict(restored["config"])
    if "crop_protocol" not in config:
        config.crop_protocol = "face_square"
    return config



def restore(manager: ocp.CheckpointManager, step: int, abstract_state, iterator=None):
    """Restores the state (matching ``abstract_state``'s structure) and, if given, the iterator."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if iterator is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(iterator)
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"]


def restore_variables(manager: ocp.CheckpointManager, step: int) -> dict:
    """Only the model's ``{"params", "batch_stats"}`` of a checkpoint, for inference.

    Needs no optimiser or template, so it reads checkpoints of any training setup (any number of
    devices) and converted weights alike.
    """
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    state = restored["state"]
    return {"params": state["params"], "batch_stats": state["batch_stats"]}
