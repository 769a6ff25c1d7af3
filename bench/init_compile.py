"""Compile time of a model's initialiser: XLA's default options against the trainer's.

    python -m bench.init_compile [--models tiny,cnn6,wflw] [--reps 3]

For each model (``tiny``: configs/tiny.py's FAN; ``cnn6``: the Wing paper's CNN-6; ``wflw``: the
paper's FAN-4 of configs/wflw.py) the initialiser is compiled ``--reps`` times
with XLA's default options and ``--reps`` times with ``awing_jax.trainer.INIT_COMPILER_OPTIONS``,
alternately, in this process (no compilation cache). Prints the median compile time of each, the
ratio default / trainer's, and whether the two programs' variables are bit-identical.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import numpy as np

from awing_jax import trainer
from awing_jax.models import create_model
from configs import tiny, wflw, wing_cnn6

CONFIGS = {"tiny": tiny.get_config, "cnn6": wing_cnn6.get_config, "wflw": wflw.get_config}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,cnn6,wflw")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    print(f"{platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"options {trainer.INIT_COMPILER_OPTIONS}")
    print(f"{'model':6s} {'default s':>10s} {'trainer s':>10s} {'ratio':>6s}  identical")
    for name in args.models.split(","):
        config = CONFIGS[name]()
        model = create_model(config)
        key = jax.random.key(0)
        times = {"default": [], "trainer": []}
        values = {}
        for _ in range(args.reps):
            for label, options in (("default", {}), ("trainer", trainer.INIT_COMPILER_OPTIONS)):
                jax.clear_caches()  # JAX keeps compiled programs in memory: compile afresh
                lowered = trainer.initialiser(model, config.input_size).lower(key)
                start = time.perf_counter()
                compiled = lowered.compile(compiler_options=dict(options))
                times[label].append(time.perf_counter() - start)
                values[label] = jax.device_get(compiled(key))
        same = all(np.array_equal(a, b) for a, b in zip(
            jax.tree.leaves(values["default"]), jax.tree.leaves(values["trainer"]), strict=True))
        default, ours = (statistics.median(times[k]) for k in ("default", "trainer"))
        print(f"{name:6s} {default:10.2f} {ours:10.2f} {default / ours:6.2f}  {same}", flush=True)


if __name__ == "__main__":
    main()
