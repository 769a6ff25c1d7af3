"""Compile time at XLA's default CPU options against cheaper ones, and how far results move.

    python -m bench.compile_options [--programs step,cnn6,infer,winograd,init,targets] [--reps 3]

tests/conftest.py compiles every test program with ``--xla_backend_optimization_level=0
--xla_llvm_disable_expensive_passes=true`` (what ``JAX_DISABLE_MOST_OPTIMIZATIONS`` sets). This
script compiles the kinds of program the suite compiles at XLA's defaults (level 3, expensive
passes on), at level 1 and at level 0 (both without the expensive passes), ``--reps`` times each,
alternately, in this process (no compilation cache); runs each compiled program on the same
inputs; and prints the median compile times, each setting's ratio to the default's, and the
largest absolute difference of any output from the default's. The programs, at the test sizes:

- ``step``: configs/tiny.py's training step (the FAN, targets, AWing loss, RMSProp), two steps;
- ``cnn6``: configs/tiny_cnn6.py's training step (the coordinate regressor, Adam), two steps;
- ``infer``: inference of a 2-stack, 2-level FAN (heatmaps and decoded landmarks);
- ``winograd``: value and gradient of a FAN built with the Winograd convolution lowering;
- ``init``: the tiny FAN's initialiser;
- ``targets``: the training targets of WFLW's 98 points and boundary curves on 64 x 64 maps.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from awing_jax import inference, trainer
from awing_jax.landmarks import get_scheme
from awing_jax.models import create_model
from awing_jax.targets import render_targets
from bench.train_step import synthetic_batch
from configs import tiny, tiny_cnn6

# XLA's CPU defaults for the options that trainer.INIT_COMPILER_OPTIONS and the tests' XLA_FLAGS
# set (tests/test_train.py compiles the initialiser at them too).
XLA_DEFAULTS = {"xla_backend_optimization_level": 3, "xla_llvm_disable_expensive_passes": False}
# The settings compared: XLA's defaults, LLVM level 1 without the expensive passes, and what
# JAX_DISABLE_MOST_OPTIMIZATIONS=1 sets (level 0 without them).
SETTINGS = {
    "default": XLA_DEFAULTS,
    "level1": {"xla_backend_optimization_level": 1, "xla_llvm_disable_expensive_passes": True},
    "level0": {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True},
}


def _train_step(config):
    """(lowered, run): the pmap'ed step on one device, run for two steps from one state."""
    state = trainer.create_train_state(config, jax.random.key(0), 1000)
    one = jax.local_devices()[:1]
    shapes = argparse.Namespace(input_size=config.input_size, batch=config.batch_size,
                                landmarks=get_scheme(config.scheme).num_landmarks)
    batch = {k: v[None] for k, v in synthetic_batch(shapes).items()}  # one device's share
    rate = trainer.learning_rate_at(config, 1000, 0)
    lowered = trainer.make_p_train_step(config).lower(trainer.replicate(state, one), batch, rate)

    def run(compiled):
        current, outputs = trainer.replicate(state, one), []
        for _ in range(2):
            current, metrics = compiled(current, batch, rate)
            outputs.append(metrics)
        return [trainer.unreplicate(current.params), outputs]

    return lowered, run


def _fan_inputs(num_stacks, depth, lowering="xla"):
    config = tiny.get_config()
    config.model.num_stacks, config.model.depth = num_stacks, depth
    model = create_model(config, bn_axis_name=None, conv_lowering=lowering)
    variables = trainer.init_variables(model, config.input_size, jax.random.key(1))
    crops = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    return config, model, variables, crops


def program(name):
    """(lowered, run) of one program kind: ``run(compiled)`` returns its outputs."""
    if name == "step":
        return _train_step(tiny.get_config())
    if name == "cnn6":
        return _train_step(tiny_cnn6.get_config())
    if name == "infer":
        config, model, variables, crops = _fan_inputs(2, 2)
        fn = jax.jit(lambda v, x: inference.infer(model, v, x, decoder=config.decoder))
        return fn.lower(variables, crops), lambda c: c(variables, crops)
    if name == "winograd":
        _, model, variables, crops = _fan_inputs(1, 1, lowering="winograd")
        x = crops.astype(np.float32) / 255.0

        def loss(params):
            outputs, _ = model.apply({**variables, "params": params}, x, train=True,
                                     mutable=["batch_stats"])
            return sum(jnp.mean(o**2) for o in outputs)

        fn = jax.jit(jax.value_and_grad(loss))
        return fn.lower(variables["params"]), lambda c: c(variables["params"])
    if name == "init":
        config = tiny.get_config()
        key = jax.random.key(0)
        return (trainer.initialiser(create_model(config), config.input_size).lower(key),
                lambda c: c(key))
    if name == "targets":
        rng = np.random.default_rng(2)
        points = rng.uniform(-10, 266, (8, 98, 2)).astype(np.float32)
        visible = rng.uniform(size=(8, 98)) > 0.1
        fn = jax.jit(lambda p, v: render_targets(p, v, "wflw", heatmap_size=64))
        return fn.lower(points, visible), lambda c: c(points, visible)
    raise ValueError(f"unknown program {name!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--programs", default="step,cnn6,infer,winograd,init,targets")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    print(f"{platform.processor() or platform.machine()}, jax {jax.__version__}")
    for label, options in SETTINGS.items():
        print(f"  {label}: {options}")
    others = [label for label in SETTINGS if label != "default"]
    print(f"{'program':9s} " + " ".join(f"{label + ' s':>10s}" for label in SETTINGS) + "  "
          + "  ".join(f"{'ratio ' + label:>12s} {'max |diff|':>10s}" for label in others))
    totals = dict.fromkeys(SETTINGS, 0.0)
    for name in args.programs.split(","):
        lowered, run = program(name)
        times = {label: [] for label in SETTINGS}
        outputs = {}
        for _ in range(args.reps):
            for label, options in SETTINGS.items():
                jax.clear_caches()  # JAX keeps compiled programs in memory: compile afresh
                start = time.perf_counter()
                compiled = lowered.compile(compiler_options=dict(options))
                times[label].append(time.perf_counter() - start)
                outputs[label] = [np.asarray(x, np.float64) for x in jax.tree.leaves(
                    jax.device_get(run(compiled)))]
        medians = {label: statistics.median(t) for label, t in times.items()}
        cells = []
        for label in others:
            diff = max((float(np.max(np.abs(a - b))) for a, b in zip(
                outputs["default"], outputs[label], strict=True) if a.size), default=0.0)
            cells.append(f"{medians['default'] / medians[label]:12.2f} {diff:10.2g}")
        for label in SETTINGS:
            totals[label] += medians[label]
        print(f"{name:9s} " + " ".join(f"{medians[label]:10.2f}" for label in SETTINGS) + "  "
              + "  ".join(cells), flush=True)
    print(f"{'total':9s} " + " ".join(f"{totals[label]:10.2f}" for label in SETTINGS) + "  "
          + "  ".join(f"{totals['default'] / totals[label]:12.2f} {'':10s}" for label in others))


if __name__ == "__main__":
    main()
