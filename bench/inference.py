"""Inference speed of the FAN (eval-mode forward pass), JAX against PyTorch on the same machine.

    python -m bench.inference [--stacks 4 --features 256 --depth 4 --input_size 256 --batch 8]
        [--dtype float32|bfloat16] [--threads N] [--reps 3] [--framework jax|torch] [--compare]
        [--tiny]

JAX: ``awing_jax.inference.infer``'s model call (``create_model`` with ``--conv_lowering``,
applied with ``train=False``, BatchNorm running averages; weights drawn on the host by
``awing_jax.models.common.random_variables``) under ``jax.jit``, compiled ahead of
time so compile time is reported apart. PyTorch:
``awing_jax.torch_reference.FAN`` in ``eval()`` mode under ``torch.inference_mode`` (bfloat16
through ``torch.autocast``). Both take uint8 images, scale them to [0, 1] and return every stack's
heatmaps; decoding landmarks is left out of both. Prints the median of ``--reps`` timed batches
after a warm-up, images/s, and with ``--compare`` the JAX/PyTorch ratio of one run.
"""

from __future__ import annotations

import time

from bench import _speed
from bench.train_step import config_for, synthetic_batch


def prepare_jax(args) -> _speed.Runner:
    import jax
    import jax.numpy as jnp

    from awing_jax.inference import model_inputs
    from awing_jax.models import create_model
    from awing_jax.models.common import random_variables

    config = config_for(args)
    model = create_model(config)
    variables = random_variables(model, config.input_size)
    images = jnp.asarray(synthetic_batch(args)["image"])

    def apply(model, variables, images):
        return model.apply(variables, model_inputs(images, model.dtype), train=False)

    def forward(variables, images):
        return apply(model, variables, images)

    start = time.perf_counter()
    lowered = jax.jit(forward).lower(variables, images)
    compiled = lowered.compile()
    compile_seconds = time.perf_counter() - start

    def run():
        jax.block_until_ready(compiled(variables, images))

    # The timed forward pass's own lowering when it is the one counted (no second trace).
    flops = _speed.network_flops(lambda lowering: lowered if lowering == model.conv_lowering
                                 else jax.jit(lambda v, x: apply(
                                     create_model(config, conv_lowering=lowering), v, x)
                                 ).lower(variables, images))
    return _speed.Runner("jax", run, compile_seconds, flops)


def prepare_torch(args) -> _speed.Runner:
    import torch

    from awing_jax.torch_reference import FAN

    torch.manual_seed(0)
    device = _speed.torch_device()
    model = FAN(args.stacks, args.landmarks, features=args.features, depth=args.depth)
    model = model.eval().to(device)
    images = torch.from_numpy(synthetic_batch(args)["image"]).permute(0, 3, 1, 2).contiguous()
    images = images.to(device)
    autocast = args.dtype == "bfloat16"

    def run():
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16,
                                                    enabled=autocast):
            model(images.float() / 255.0)
        _speed.torch_sync(device)

    return _speed.Runner("torch", run)


def main():
    args = _speed.parse_args(__doc__.splitlines()[0])
    _speed.run(args, "inference", {"jax": prepare_jax, "torch": prepare_torch},
               "bench.inference")


if __name__ == "__main__":
    main()
