"""Training: the pmap train step and ``train_and_evaluate(config, workdir)``.

One batch travels one way: grain pipeline (uint8 crops, landmarks; host) -> train step (targets,
FAN forward, Adaptive Wing loss, pmean'ed gradients, RMSProp; device) -> metrics and checkpoints.
Sections below follow that order: setup, model and optimiser, the step, the loop.

Coordinate regressors (the Wing paper's CNN-6 and ResNet-50, see
:func:`awing_jax.models.predicts_coordinates`) take the same path; only the objective differs: a
coordinate loss on the predicted landmarks instead of a heatmap loss on rendered targets. With
``config.pdb`` the training records are replicated by pose-based data balancing
(:mod:`awing_jax.pose_balancing`). The recipe: docs/training.md.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from awing_jax import checkpoint as ckpt
from awing_jax import (
    custom_schemes,
    evaluation,
    finetune,
    inference,
    input_pipeline,
    pose_balancing,
)
from awing_jax.landmarks import get_scheme
from awing_jax.losses import coordinate_loss, heatmap_loss
from awing_jax.models import DTYPES, create_model, predicts_coordinates
from awing_jax.models.fan import FAN
from awing_jax.targets import render_targets

AXIS = "batch"
# Coordinate losses see errors in pixels of a 64 x 64 input, the Wing paper's CNN-6 input, for
# which its Wing parameters (w = 10, epsilon = 2) are given: at input S errors are scaled by
# 64 / S. Wing loss is scale-equivariant, so this is the paper's loss with w and epsilon scaled
# by S / 64 (and a constant factor), the same shape relative to the face at every input size.
COORDINATE_UNIT_SIZE = 64


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is left as it was."""


class TrainState(train_state.TrainState):
    """Params, optimiser state and step, plus the BatchNorm statistics.

    All randomness of a run lives in the data pipeline (its per-record seeds derive from the run's
    seed, the epoch and the record index), so the iterator state checkpointed beside this is the
    run's whole RNG state.
    """

    batch_stats: Any = None


# ----------------------------------------------------------------------------- setup


def steps_per_epoch(config, num_train_examples: int) -> int:
    return max(1, num_train_examples // config.batch_size)


def total_steps(config, num_train_examples: int) -> int:
    if config.num_train_steps > 0:
        return config.num_train_steps
    return config.num_epochs * steps_per_epoch(config, num_train_examples)


def _decay_steps(config, num_train_examples: int) -> list[int]:
    """The steps at which the learning rate is multiplied by ``decay_factor``, in order."""
    per_epoch = steps_per_epoch(config, num_train_examples)
    return sorted(int(e) * per_epoch for e in config.optimizer.decay_epochs)


def learning_rate_schedule(config, num_train_examples: int) -> optax.Schedule:
    """Step decay: ``learning_rate`` times ``decay_factor`` at each of ``decay_epochs``."""
    oc = config.optimizer
    return optax.piecewise_constant_schedule(
        oc.learning_rate,
        {step: oc.decay_factor for step in _decay_steps(config, num_train_examples)})


def learning_rate_at(config, num_train_examples: int, step: int) -> np.float32:
    """:func:`learning_rate_schedule` at ``step`` (the update from ``step`` to ``step + 1``),
    computed on the host in float32 by the schedule's own arithmetic: the learning rate, times
    ``decay_factor`` once for every boundary that ``step`` has reached, each product rounded to
    float32 (tests/test_train.py compares the two bit for bit).

    The training loop passes it to the step as an argument, so that the compiled step does not
    depend on the learning rate, the decay epochs or the size of the data set: runs that differ
    only in those share one compiled step (the persistent XLA cache)."""
    oc = config.optimizer
    rate = np.float32(oc.learning_rate)
    for boundary in _decay_steps(config, num_train_examples):
        if step >= boundary:
            rate = np.float32(np.float32(oc.decay_factor) * rate)
    return rate


def optimizer(config, learning_rate) -> optax.GradientTransformation:
    """The paper's RMSProp as in PyTorch (its framework): alpha 0.99, eps outside the sqrt,
    coupled L2 weight decay added to the gradient; ``learning_rate`` is a schedule (a function of
    the update count), a number or a traced scalar.

    ``optimizer.name = "sgd"`` (with ``momentum``) is there for ablations, and for exact
    equivalence checks: RMSProp's first steps are about ``10 * lr * sign(g)``, which turns float
    noise in exactly-zero gradients (conv biases feeding train-mode BatchNorm) into full steps.
    ``"adam"`` (PyTorch defaults, the same coupled weight decay) trains the coordinate
    regressors.

    A number or a traced scalar enters as a constant schedule, so the optimiser's state has the
    same layout whatever ``learning_rate`` is (an update count, then the method's statistics).
    """
    oc = config.optimizer
    schedule = learning_rate if callable(learning_rate) else (lambda count: learning_rate)
    if oc.name == "rmsprop":
        update = optax.rmsprop(schedule, decay=0.99, eps=1e-8, eps_in_sqrt=False,
                               momentum=oc.momentum or None)
    elif oc.name == "sgd":
        update = optax.sgd(schedule, momentum=oc.momentum or None)
    elif oc.name == "adam":
        update = optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)
    else:
        raise ValueError(f"unknown optimizer {oc.name!r}; known: 'rmsprop', 'sgd', 'adam'")
    # Flattened: one fused update over a single vector instead of one kernel per parameter,
    # which cuts XLA compile time several-fold on CPU and costs one copy per step.
    return optax.flatten(optax.chain(optax.add_decayed_weights(oc.weight_decay), update))


def create_optimizer(config, num_train_examples: int) -> optax.GradientTransformation:
    """:func:`optimizer` with the step decay of :func:`learning_rate_schedule`: what a
    :class:`TrainState`'s ``tx`` initialises its state with."""
    return optimizer(config, learning_rate_schedule(config, num_train_examples))


# XLA options for compiling a model's initialiser. Its program is almost all threefry hashing
# (one key per parameter tensor, then its random bits), which XLA's CPU backend compiles at LLVM
# optimisation level 3 by default. Level 1 compiles it up to 2.8x faster (tiny test FAN: 10.7 s
# -> 3.8 s; FAN-4: 28.3 s -> 26.6 s) and gives bit-identical values, since the program has no
# float reduction whose order an optimisation level could change: tests/test_train.py compares
# the two, BENCHMARKS.md "Initialiser compile" has the timings. Pass {} for XLA's defaults.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def initialiser(model, input_size: int):
    """``model.init`` at a (1, input_size, input_size, 3) input, jitted: a function of the key."""
    image = jnp.zeros((1, input_size, input_size, 3), jnp.float32)
    return jax.jit(lambda rng: model.init(rng, image, train=False))


@functools.lru_cache(maxsize=16)
def _compiled_initialiser(model, input_size: int, key_type, options: tuple):
    return initialiser(model, input_size).lower(key_type).compile(compiler_options=dict(options))


def init_variables(model, input_size: int, rng, *,
                   compiler_options: dict | None = None) -> dict:
    """:func:`initialiser`'s variables for key ``rng``, compiled once per process with
    ``compiler_options`` (default :data:`INIT_COMPILER_OPTIONS`)."""
    options = INIT_COMPILER_OPTIONS if compiler_options is None else compiler_options
    key_type = jax.ShapeDtypeStruct(rng.shape, rng.dtype)
    return _compiled_initialiser(model, input_size, key_type, tuple(sorted(options.items())))(rng)


def create_train_state(config, rng, num_train_examples: int) -> TrainState:
    """The state a run starts from: :func:`init_variables` of ``config``'s model for key ``rng``."""
    return train_state(config, init_variables(create_model(config), config.input_size, rng),
                       num_train_examples)


def train_state(config, variables: dict, num_train_examples: int) -> TrainState:
    """A fresh training state of ``config``'s model holding ``variables`` (``params`` and, for
    models with BatchNorm, ``batch_stats``): update count 0, RMSProp's statistics at zero."""
    return TrainState.create(
        apply_fn=create_model(config).apply, params=variables["params"],
        batch_stats=variables.get("batch_stats"),
        tx=create_optimizer(config, num_train_examples),
    )


def replicate(tree, devices=None):
    """``tree`` on each of ``devices`` (default: the local ones), stacked on a new leading
    axis as ``jax.pmap`` takes it, and sharded over the pmap's axis :data:`AXIS`.

    The copies are made on the host and transferred: unlike ``flax.jax_utils.replicate``, which
    stacks on device, this compiles no program (one per distinct leaf shape there, a few seconds
    per run on a CPU).
    """
    devices = list(devices or jax.local_devices())
    sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(devices), (AXIS,)),
                                          jax.sharding.PartitionSpec(AXIS))

    def put(x):
        x = np.asarray(jax.device_get(x))
        return jax.device_put(np.broadcast_to(x[None], (len(devices), *x.shape)), sharding)

    return jax.tree.map(put, tree)


def unreplicate(tree):
    """One replica of a :func:`replicate`d (or pmap-returned) ``tree``, as host numpy arrays.

    The replicas are equal (the step pmean's the gradients and the BatchNorm statistics); this
    copies this process's first one without compiling an indexing program per leaf shape. A copy,
    not a view: the step donates (and reuses) the device buffers it reads.
    """
    return jax.tree.map(lambda x: np.array(x.addressable_shards[0].data)[0, ...], tree)


# ----------------------------------------------------------------------------- the step


def compute_loss(params, batch_stats, batch, *, apply_fn, config, scheme):
    """Runs the model in training mode and returns (loss, (outputs, new stats)).

    The images enter the model as :func:`awing_jax.inference.infer` feeds them
    (:func:`awing_jax.inference.model_inputs`). A heatmap model is scored against targets rendered
    on device (:func:`heatmap_objective`), a coordinate regressor against the landmarks themselves
    (:func:`regression_objective`).
    """
    images = inference.model_inputs(batch["image"], DTYPES[config.dtype])
    outputs, new_state = apply_fn(
        {"params": params, "batch_stats": batch_stats}, images, train=True,
        mutable=["batch_stats"])
    if predicts_coordinates(config):
        loss = regression_objective(outputs, batch, config)
    else:
        loss = heatmap_objective(outputs, batch, config, scheme)
    return loss, (outputs, new_state["batch_stats"])


def heatmap_objective(outputs, batch, config, scheme, *, stride: int = FAN.heatmap_stride):
    """The heatmap loss of the stacks' ``outputs`` against targets rendered from the batch, at
    the heatmap model's ``stride``."""
    targets, mask = render_targets(
        batch["landmarks"], batch["visible"], scheme,
        heatmap_size=config.input_size // stride, stride=stride,
        sigma=config.target.sigma, boundary_sigma=config.target.boundary_sigma,
        mode=config.target.mode, boundary=config.model.boundary)
    return heatmap_loss(
        outputs, targets, kind=config.loss.kind, use_weight_map=config.loss.use_weight_map,
        mask=mask[:, None, None, :], **loss_kwargs(config))


def regression_objective(landmarks, batch, config):
    """The coordinate loss of predicted ``landmarks`` (B, L, 2) input pixels, masked by
    ``visible`` and measured in pixels of a ``COORDINATE_UNIT_SIZE`` input."""
    unit = COORDINATE_UNIT_SIZE / config.input_size
    return coordinate_loss(landmarks * unit, batch["landmarks"] * unit, kind=config.loss.kind,
                           mask=batch["visible"], **coordinate_loss_kwargs(config))


def loss_kwargs(config) -> dict:
    kw = {}
    if config.loss.use_weight_map:
        kw.update(weight=config.loss.weight, threshold=config.loss.threshold)
    return kw


def coordinate_loss_kwargs(config) -> dict:
    if config.loss.kind == "wing":
        return {"w": config.loss.wing_w, "epsilon": config.loss.wing_epsilon}
    return {}


def train_step(state: TrainState, batch, learning_rate, *, config, scheme):
    """One optimisation step on this device's share of the global batch (run under pmap).

    ``learning_rate`` is this update's rate (:func:`learning_rate_at`), an argument rather than a
    constant of the program. Gradients and the loss are averaged over the ``batch`` axis
    (BatchNorm statistics are synced by the model's ``bn_axis_name``). ``metrics["finite"]`` is 0
    when the loss or the gradient is NaN/Inf; the host checks it before every checkpoint, so a
    diverged state is never saved.
    """
    grad_fn = jax.value_and_grad(compute_loss, has_aux=True)
    (loss, (outputs, batch_stats)), grads = grad_fn(
        state.params, state.batch_stats, batch, apply_fn=state.apply_fn, config=config,
        scheme=scheme)
    grads = jax.lax.pmean(grads, AXIS)
    loss = jax.lax.pmean(loss, AXIS)
    # flax's update with this step's optimiser (the same state layout as ``state.tx``'s), then
    # ``state.tx`` back: the returned state must not hold an optimiser bound to a traced rate.
    new_state = state.replace(tx=optimizer(config, learning_rate)).apply_gradients(
        grads=grads, batch_stats=batch_stats).replace(tx=state.tx)
    grad_norm = optax.tree.norm(grads)
    # The model of state.apply_fn (the same config builds the same module), for its decoder.
    pred = inference.landmarks_from_outputs(create_model(config), outputs, decoder=config.decoder)
    nme = evaluation.batch_nme(pred, batch, config, scheme)
    metrics = {"loss": loss, "grad_norm": grad_norm,
               "train_nme": jax.lax.pmean(jnp.mean(nme), AXIS),
               "finite": (jnp.isfinite(loss) & jnp.isfinite(grad_norm)).astype(jnp.float32)}
    return new_state, metrics


def make_p_train_step(config):
    """:func:`train_step` under ``pmap`` over the local devices: ``step(state, batch,
    learning_rate)`` with ``state`` and ``batch`` replicated / sharded over the devices
    (:func:`replicate`), the learning rate one float32 for all of them. The state is donated."""
    scheme = get_scheme(config.scheme)
    step = functools.partial(train_step, config=config, scheme=scheme)
    return jax.pmap(step, axis_name=AXIS, in_axes=(0, 0, None), donate_argnums=(0,))


# ----------------------------------------------------------------------------- the loop


def pose_balancing_weights(source, config) -> np.ndarray:
    """PDB replication counts (N,) of the records of ``source`` from their stored landmarks
    (``config.pdb_bins`` bins, ``config.pdb_component``, -1 = the scheme's default)."""
    landmarks, visible = input_pipeline.stored_landmarks(source)
    component = config.pdb_component
    if component < 0:
        component = pose_balancing.default_component(get_scheme(config.scheme).name)
    return pose_balancing.pdb_weights(landmarks, visible, num_bins=config.pdb_bins,
                                      component=component)


def _log_json(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint if there is one.

    Returns the final validation metrics (NME, FR, AUC on ``config.eval_split``).
    """
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0
    # A scheme from the data ("dataset") becomes explicit, so that checkpoints carry it.
    config = custom_schemes.resolve_config(config, announce=print if is_main else None)
    if config.batch_size % jax.device_count():
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                         f"{jax.device_count()} devices")
    per_device_batch = config.batch_size // jax.device_count()

    # Input.
    train_source = input_pipeline.data_source(config.dataset, config.train_split, config.data_dir)
    eval_source = input_pipeline.data_source(config.dataset, config.eval_split, config.data_dir)
    sample_weights = pose_balancing_weights(train_source, config) if config.pdb else None
    # An epoch is one pass over the (balanced) training stream, replicated records included.
    num_train = len(train_source) if sample_weights is None else int(np.sum(sample_weights))
    if is_main and sample_weights is not None:
        print(f"pose-based data balancing: {len(train_source)} records -> {num_train} per epoch "
              f"(up to {int(np.max(sample_weights))} copies)", flush=True)
    num_steps = total_steps(config, num_train)
    iterator = input_pipeline.train_iterator(
        train_source, config, seed=config.seed, num_local_devices=jax.local_device_count(),
        per_device_batch=per_device_batch, sample_weights=sample_weights)

    # Model and optimiser, restored if the run was interrupted.
    manager = ckpt.create_manager(workdir, keep_checkpoints=config.keep_checkpoints)
    state = create_train_state(config, jax.random.key(config.seed), num_train)
    if manager.latest_step() is not None:
        state = ckpt.restore(manager, manager.latest_step(), state, iterator)
        if is_main:
            print(f"resumed from step {int(state.step)} in {manager.directory}", flush=True)
    elif config.get("init_from"):  # fine-tuning: another run's (or converted) weights
        state = finetune.init_state(state, config, announce=print if is_main else None)
        if is_main:
            print(f"weights from {config.init_from}"
                  + (f" ({config.init_landmark_map})" if config.get("init_landmark_map") else ""),
                  flush=True)
    start_step = int(state.step)  # the config is saved with every checkpoint (ckpt.save)

    p_train_step = make_p_train_step(config)
    state = replicate(state)  # the pmap's mesh axis: no recompile
    writer = _summary_writer(workdir) if is_main else None
    progress = _progress(start_step, num_steps) if is_main else None

    infer = evaluation.make_inference_fn(config)  # built once: no recompile per evaluation

    def evaluate_and_save(step: int) -> dict:
        host_state = unreplicate(state)
        result = evaluation.evaluate_source(host_state, eval_source, config, infer=infer)
        summary = {k: v for k, v in result.items() if np.isscalar(v)}
        ckpt.save(manager, step, host_state, iterator, config, metrics={"nme": summary["nme"]})
        if is_main:
            _log_json(os.path.join(workdir, "metrics.jsonl"),
                      {"step": step, "split": config.eval_split, **summary})
            for k, v in summary.items():
                writer.add_scalar(f"eval/{k}", v, step)
            print(f"\nstep {step}: {config.eval_split} NME {summary['nme']:.4f} "
                  f"FR@{config.failure_threshold} {summary['failure_rate']:.4f} "
                  f"AUC@{config.failure_threshold} {summary['auc']:.4f}", flush=True)
        return summary

    # Training loop. Metrics stay on device until a log step, so dispatch runs ahead of compute
    # (and host->device copies overlap the previous step). No device-side prefetch: the iterator
    # must not run ahead of the step, or its checkpointed state would skip batches on resume.
    pending: list = []
    summary: dict = {}
    t0 = time.time()
    for step in range(start_step + 1, num_steps + 1):
        batch = next(iterator)
        rate = learning_rate_at(config, num_train, step - 1)
        state, metrics = p_train_step(state, batch, rate)
        pending.append(metrics)
        if progress is not None:
            progress.update(1)
        evaluating = step % config.eval_every_steps == 0 or step == num_steps
        saving = evaluating or step % config.checkpoint_every_steps == 0
        if step % config.log_every_steps == 0 or saving:  # always check before a save
            logged = [jax.tree.map(lambda x: x[0], m) for m in jax.device_get(pending)]
            pending = []
            if not all(m["finite"] == 1.0 for m in logged):
                bad = step - len(logged) + 1 + next(
                    i for i, m in enumerate(logged) if not m["finite"])
                last = manager.latest_step()
                raise TrainingDivergedError(
                    f"loss or gradients became NaN/Inf at step {bad}; training stopped without "
                    f"saving. Last good checkpoint: "
                    f"{'none' if last is None else f'step {last}'} in {manager.directory}. "
                    "Lower the learning rate or check the data.")
            record = {k: float(np.mean([m[k] for m in logged]))
                      for k in ("loss", "train_nme", "grad_norm")}
            record.update(step=step, learning_rate=float(rate),
                          images_per_second=len(logged) * config.batch_size / (time.time() - t0))
            t0 = time.time()
            if is_main:
                _log_json(os.path.join(workdir, "metrics.jsonl"), record)
                for k in ("loss", "train_nme", "grad_norm", "learning_rate", "images_per_second"):
                    writer.add_scalar(f"train/{k}", record[k], step)
                progress.set_postfix(loss=f"{record['loss']:.4f}", nme=f"{record['train_nme']:.4f}")
        if evaluating:
            summary = evaluate_and_save(step)
        elif saving:
            ckpt.save(manager, step, unreplicate(state), iterator, config)
    if not summary:  # resumed after the last step: report the final checkpoint's metrics
        summary = evaluation.evaluate_source(
            unreplicate(state), eval_source, config, infer=infer)
        summary = {k: v for k, v in summary.items() if np.isscalar(v)}
    manager.wait_until_finished()
    if progress is not None:
        progress.close()
        writer.close()
    return summary


def _summary_writer(workdir: str):
    """TensorBoard scalars in ``workdir/tensorboard``.

    tensorboardX imports PyTorch at import time when it is installed (the ``torch`` extra), only
    to accept torch tensors as values: 2.4 s of a run's start on a CPU. The loop logs Python
    floats, so tensorboardX is imported with ``torch`` hidden, unless this process already
    imported it; ``import torch`` works as before afterwards.
    """
    with _hidden_module("torch"):
        from tensorboardX import SummaryWriter

    return SummaryWriter(os.path.join(workdir, "tensorboard"))


@contextlib.contextmanager
def _hidden_module(name: str):
    """``import name`` raises ImportError inside the block (unless it is imported already)."""
    if name in sys.modules:
        yield
        return
    sys.modules[name] = None
    try:
        yield
    finally:
        if sys.modules.get(name, 0) is None:
            del sys.modules[name]


def _progress(start: int, total: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                mininterval=1.0, disable=None)

