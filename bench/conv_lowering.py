"""Speed of the convolution lowerings (``conv_lowering``), per layer and per whole program.

    python -m bench.conv_lowering [--batch 4] [--reps 7] [--tiny] [--lowering auto]
    python -m bench.conv_lowering --programs [--stacks 4] [--batch 4] [--reps 3] [--train]

Per layer: for the convolution shapes of the FAN-4 at 256² input (3x3 ConvBlock convolutions at
128² to 8², 1x1 convolutions), times ``awing_jax.models.conv.conv_function(--lowering)`` (by
default "auto": 1x1 as a matrix product, 3x3 as Winograd F(4x4, 3x3) on CPU) and
``lax.conv_general_dilated`` forward, and
forward plus both gradients (``jax.vjp``), each compiled ahead of time (compile time reported
apart). Prints the median of ``--reps`` timed calls after a warm-up, alternating the two forms
call by call, the ratio lax time / ours, our rate in direct-convolution FLOPs (forward+backward
counted as 3x the forward), and the largest difference of the forward outputs relative to their
largest magnitude.

``--programs``: the programs whose default lowering is chosen from these figures, for each of
"xla", "matmul" and "winograd": the inference program of evaluation, export and prediction
(``awing_jax.inference.infer`` on uint8 crops, FAN of ``--stacks`` stacks at 256², 98 landmarks)
and with ``--train`` the training step (``awing_jax.trainer.make_p_train_step``). Prints each
one's compile time, the median of ``--reps`` calls, and how many calls it takes for a faster step
to repay a longer compile against "matmul". Both modes first call ``retain_freed_memory()``, as
the programs do.
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
    p.add_argument("--lowering", default="auto", help="the lowering timed per layer")
    p.add_argument("--programs", action="store_true", help="whole programs, every lowering")
    p.add_argument("--stacks", type=int, default=4, help="--programs: FAN stacks")
    p.add_argument("--input_size", type=int, default=256, help="--programs: input side")
    p.add_argument("--train", action="store_true", help="--programs: also the training step")
    args = p.parse_args()
    if args.programs:
        return programs(args)

    from awing_jax.runtime import retain_freed_memory

    retain_freed_memory()
    import jax
    import numpy as np
    from jax import lax

    from awing_jax.models.conv import conv_function

    conv_general_dilated = conv_function(args.lowering)
    dims = ("NHWC", "HWIO", "NHWC")
    print(f"jax {jax.__version__} on {jax.default_backend()}, batch {args.batch}, "
          f"median of {args.reps}, ours = {args.lowering!r}")
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


def _timed(compile_fn, call, reps: int) -> tuple[float, float]:
    """(compile seconds, median seconds per call after one warm-up call)."""
    import jax

    start = time.perf_counter()
    compiled = compile_fn()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(call(compiled))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(call(compiled))
        times.append(time.perf_counter() - start)
    return compile_s, statistics.median(times)


def programs(args) -> None:
    from awing_jax.runtime import retain_freed_memory

    retain_freed_memory()
    import jax
    import numpy as np

    from awing_jax import inference, trainer
    from awing_jax.models import create_model
    from configs import base

    print(f"jax {jax.__version__} on {jax.default_backend()}, FAN-{args.stacks} at "
          f"{args.input_size}², batch {args.batch}, median of {args.reps}")
    print(f"{'program':>10} {'lowering':>9} {'compile s':>10} {'call ms':>9} "
          f"{'calls to repay vs matmul':>25}")
    rng = np.random.default_rng(0)
    size = args.input_size
    images = rng.integers(0, 256, (args.batch, size, size, 3), dtype=np.uint8)
    landmarks = rng.uniform(0.2 * size, 0.8 * size, (args.batch, 98, 2)).astype(np.float32)
    batch = {"image": images, "landmarks": landmarks, "visible": np.ones((args.batch, 98), bool)}
    kinds = ["inference"] + (["train"] if args.train else [])
    for kind in kinds:
        rows = {}
        for lowering in ("xla", "matmul", "winograd"):
            config = base.get_config()
            config.input_size = size
            config.batch_size = args.batch
            config.model.num_stacks = args.stacks
            config.model.conv_lowering = lowering
            state = trainer.create_train_state(config, jax.random.key(0), 1000)
            if kind == "inference":
                model = create_model(config, bn_axis_name=None)
                variables = {"params": state.params, "batch_stats": state.batch_stats}
                fn = jax.jit(lambda v, x, model=model: inference.infer(
                    model, v, x, decoder="subpixel").landmarks)
                timing = _timed(lambda fn=fn, v=variables: fn.lower(v, images).compile(),
                                lambda c, v=variables: c(v, images), args.reps)
            else:
                one = jax.local_devices()[:1]
                replicated = trainer.replicate(state, one)
                sharded = trainer.replicate(batch, one)
                step = trainer.make_p_train_step(config)
                rate = trainer.learning_rate_at(config, 1000, 0)
                holder = {"state": replicated}  # the step donates its state: carry it on

                def call(compiled, holder=holder, sharded=sharded, rate=rate):
                    holder["state"], metrics = compiled(holder["state"], sharded, rate)
                    return metrics

                timing = _timed(
                    lambda step=step, s=replicated, b=sharded, r=rate:
                    step.lower(s, b, r).compile(),
                    call, args.reps)
            rows[lowering] = timing
        base_compile, base_call = rows["matmul"]
        for lowering, (compile_s, call_s) in rows.items():
            saved = base_call - call_s
            extra = compile_s - base_compile
            # "-": no longer compile to repay; "never": compiles longer and runs no faster.
            repay = ("-" if lowering == "matmul" or extra <= 0 else
                     f"{extra / saved:.0f}" if saved > 0 else "never")
            print(f"{kind:>10} {lowering:>9} {compile_s:10.1f} {call_s * 1e3:9.0f} {repay:>25}",
                  flush=True)


if __name__ == "__main__":
    main()
