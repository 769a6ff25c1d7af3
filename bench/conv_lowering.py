"""Per-layer speed of the project's convolution lowering against XLA's own convolution.

    python -m bench.conv_lowering [--batch 4] [--reps 7] [--tiny]

For the convolution shapes of the FAN-4 at 256² input (3x3 ConvBlock convolutions at 128² to
8², 1x1 convolutions), times ``awing_jax.models.conv.conv_general_dilated`` (1x1 as a matrix
product; 3x3 as Winograd F(4x4, 3x3) on CPU) and ``lax.conv_general_dilated`` forward, and
forward plus both gradients (``jax.vjp``), each compiled ahead of time (compile time reported
apart). Prints the median of ``--reps`` timed calls after a warm-up, alternating the two forms
call by call, the ratio lax time / ours, our rate in direct-convolution FLOPs (forward+backward
counted as 3x the forward), and the largest difference of the forward outputs relative to their
largest magnitude. The process first calls ``retain_freed_memory()`` as the programs do.
"""

from __future__ import annotations

import argparse
import statistics
import time

# (side, C_in, C_out, kernel): the FAN's ConvBlock halves then quarters its width.
SHAPES = [(128, 64, 64, 3), (128, 64, 32, 3), (64, 256, 128, 3), (64, 128, 64, 3),
          (64, 64, 64, 3), (32, 256, 128, 3), (32, 128, 64, 3), (16, 256, 128, 3),
          (8, 256, 128, 3), (4, 256, 128, 3), (64, 256, 256, 1), (128, 64, 128, 1)]
TINY = [(16, 8, 8, 3), (8, 8, 4, 3), (16, 8, 16, 1)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--tiny", action="store_true", help="three small shapes: a smoke run")
    args = p.parse_args()

    from awing_jax.runtime import retain_freed_memory

    retain_freed_memory()
    import jax
    import numpy as np
    from jax import lax

    from awing_jax.models.conv import conv_general_dilated

    dims = ("NHWC", "HWIO", "NHWC")
    print(f"jax {jax.__version__} on {jax.default_backend()}, batch {args.batch}, "
          f"median of {args.reps}")
    print(f"{'layer':>22} {'pass':>8} {'lax ms':>8} {'ours ms':>8} {'lax/ours':>8} "
          f"{'GFLOP/s ours':>12} {'compile s ours':>14} {'max rel diff':>12}")
    rng = np.random.default_rng(0)
    for side, c_in, c_out, k in (TINY if args.tiny else SHAPES):
        x = jax.device_put(rng.standard_normal((args.batch, side, side, c_in), np.float32))
        w = jax.device_put(rng.standard_normal((k, k, c_in, c_out), np.float32) / (3 * k))
        dy = jax.device_put(rng.standard_normal((args.batch, side, side, c_out), np.float32))
        pad = ((k // 2, k // 2),) * 2
        forms = {
            "lax": lambda x, w, pad=pad: lax.conv_general_dilated(
                x, w, (1, 1), pad, dimension_numbers=dims),
            "ours": lambda x, w, pad=pad: conv_general_dilated(
                x, w, (1, 1), pad, dimension_numbers=dims),
        }
        flops = 2 * args.batch * side * side * c_in * c_out * k * k
        outputs = {}
        for what, factor in (("forward", 1), ("fwd+bwd", 3)):
            compiled, compile_s, times = {}, {}, {}
            for name, f in forms.items():
                fn = f if what == "forward" else (
                    lambda x, w, f=f, dy=dy: jax.vjp(f, x, w)[1](dy))
                start = time.perf_counter()
                compiled[name] = jax.jit(fn).lower(x, w).compile()
                compile_s[name] = time.perf_counter() - start
                out = jax.block_until_ready(compiled[name](x, w))
                if what == "forward":
                    outputs[name] = np.asarray(out)
                times[name] = []
            diff = np.abs(outputs["ours"] - outputs["lax"]).max() / np.abs(outputs["lax"]).max()
            for _ in range(args.reps):
                for name in forms:
                    start = time.perf_counter()
                    jax.block_until_ready(compiled[name](x, w))
                    times[name].append(time.perf_counter() - start)
            lax_ms, ours_ms = (statistics.median(times[n]) * 1e3 for n in ("lax", "ours"))
            layer = f"{k}x{k} {c_in}->{c_out} @{side}"
            print(f"{layer:>22} {what:>8} {lax_ms:8.3f} {ours_ms:8.3f} {lax_ms / ours_ms:8.2f} "
                  f"{factor * flops / ours_ms / 1e6:12.1f} {compile_s['ours']:14.2f} "
                  f"{diff:12.1e}", flush=True)


if __name__ == "__main__":
    main()
