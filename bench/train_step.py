"""Training-step speed of the FAN, JAX against PyTorch on the same machine.

    python -m bench.train_step [--stacks 4 --features 256 --depth 4 --input_size 256 --batch 8]
        [--dtype float32|bfloat16] [--threads N] [--reps 3] [--framework jax|torch] [--compare]
        [--tiny]

JAX: the project's own step (``awing_jax.trainer.make_p_train_step``: targets rendered on device,
FAN forward and backward, Adaptive Wing loss with its weight map, RMSProp, metrics) on one device,
compiled ahead of time so compile time is reported apart, with ``--conv_lowering``, from
weights drawn on the host (``awing_jax.models.common.random_variables``: no initialiser
compiled); FLOPs from XLA's cost analysis of the same step with ``conv_lowering="xla"``
(direct convolutions).
PyTorch: ``awing_jax.torch_reference.FAN`` (NCHW) with the same loss written below in torch, on
targets rendered once beforehand (JAX renders them inside every step, a few percent of the work),
and ``torch.optim.RMSprop`` with the same hyper-parameters; bfloat16 through ``torch.autocast``.
Prints the median of ``--reps`` timed steps after a warm-up, images/s, and with ``--compare``
the ratio of JAX to PyTorch images/s measured in the same run, repetitions alternating.
"""

from __future__ import annotations

import time

import numpy as np

from bench import _speed


def synthetic_batch(args, seed: int = 0) -> dict[str, np.ndarray]:
    """uint8 images and landmarks spread over the middle of the crop, all visible."""
    rng = np.random.default_rng(seed)
    size = args.input_size
    return {
        "image": rng.integers(0, 256, (args.batch, size, size, 3), dtype=np.uint8),
        "landmarks": rng.uniform(0.2 * size, 0.8 * size, (args.batch, args.landmarks, 2))
        .astype(np.float32),
        "visible": np.ones((args.batch, args.landmarks), bool),
    }


def config_for(args):
    from awing_jax.landmarks import get_scheme
    from configs import base

    config = base.get_config()
    config.scheme = get_scheme(args.landmarks).name
    config.input_size = args.input_size
    config.batch_size = args.batch
    config.model.num_stacks = args.stacks
    config.model.features = args.features
    config.model.depth = args.depth
    config.dtype = args.dtype
    config.model.conv_lowering = args.conv_lowering
    return config


def with_lowering(config, lowering: str):
    """A copy of ``config`` whose model uses convolution lowering ``lowering``."""
    config = config.copy_and_resolve_references()
    config.model.conv_lowering = lowering
    return config


def prepare_jax(args) -> _speed.Runner:
    import jax

    from awing_jax import trainer
    from awing_jax.models import create_model
    from awing_jax.models.common import random_variables

    config = config_for(args)
    variables = random_variables(create_model(config), config.input_size)
    state = trainer.train_state(config, variables, num_train_examples=1000)
    one = jax.local_devices()[:1]  # the benchmark times one device, whatever else is visible
    state = trainer.replicate(state, one)
    batch = trainer.replicate(synthetic_batch(args), one)
    rate = trainer.learning_rate_at(config, 1000, 0)
    start = time.perf_counter()
    lowered = trainer.make_p_train_step(config).lower(state, batch, rate)
    compiled = lowered.compile()
    compile_seconds = time.perf_counter() - start
    holder = {"state": state}

    def step():
        holder["state"], metrics = compiled(holder["state"], batch, rate)
        jax.block_until_ready(metrics)

    # The timed step's own lowering when it is the one counted (no second trace).
    flops = _speed.network_flops(lambda lowering: lowered if lowering == config.model.conv_lowering
                                 else trainer.make_p_train_step(
                                     with_lowering(config, lowering)).lower(state, batch, rate))
    return _speed.Runner("jax", step, compile_seconds, flops)


def adaptive_wing_loss(pred, target, *, alpha=2.1, omega=14.0, epsilon=1.0, theta=0.5):
    """AWing loss per element (AWing paper, Eq. 2), in torch."""
    import torch

    d = (pred - target).abs()
    p = alpha - target
    ratio = (theta / epsilon) ** p
    a = omega * p * ratio / ((1.0 + ratio) * theta)
    c = theta * a - omega * torch.log1p(ratio)
    near = d < theta
    base = torch.where(near & (d > 0), d / epsilon, torch.ones_like(d))
    power = torch.where(d > 0, base**p, torch.zeros_like(d))
    return torch.where(near, omega * torch.log1p(power), a * d - c)


def loss_weight_map(target, *, weight=10.0, threshold=0.2):
    """``W * M + 1`` with M the 3x3 grey dilation of the target >= threshold (Sec. 4.2)."""
    import torch
    import torch.nn.functional as F

    dilated = F.max_pool2d(target, 3, stride=1, padding=1)
    return torch.where(dilated >= threshold, weight + 1.0, 1.0)


def prepare_torch(args) -> _speed.Runner:
    import jax
    import torch

    from awing_jax.targets import render_targets
    from awing_jax.torch_reference import FAN

    torch.manual_seed(0)
    config = config_for(args)
    device = _speed.torch_device()
    model = FAN(args.stacks, args.landmarks, features=args.features, depth=args.depth)
    model.train().to(device)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4, alpha=0.99, eps=1e-8,
                                    weight_decay=1e-5)
    batch = synthetic_batch(args)
    targets, _ = jax.jit(render_targets, static_argnames=(
        "scheme", "heatmap_size", "sigma", "boundary_sigma", "mode", "boundary"))(
        batch["landmarks"], batch["visible"], config.scheme,
        heatmap_size=args.input_size // 4, sigma=1.0, boundary_sigma=1.0, mode="subpixel",
        boundary=True)
    target = torch.from_numpy(np.array(targets)).permute(0, 3, 1, 2).contiguous().to(device)
    weights = loss_weight_map(target)
    images = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous().to(device)
    autocast = args.dtype == "bfloat16"

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            outputs = model(images.float() / 255.0)
        loss = sum((adaptive_wing_loss(o.float(), target) * weights).mean() for o in outputs)
        loss.backward()
        optimizer.step()
        loss.item()

    return _speed.Runner("torch", step)


def main():
    args = _speed.parse_args(__doc__.splitlines()[0])
    _speed.run(args, "train step", {"jax": prepare_jax, "torch": prepare_torch},
               "bench.train_step")


if __name__ == "__main__":
    main()
