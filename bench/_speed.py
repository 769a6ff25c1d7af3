"""What bench/train_step.py and bench/inference.py share: flags, the machine, timing and the report.

Each script supplies, per framework, a ``prepare(args) -> Runner``: the work of one repetition
(one step or one forward pass on a fixed batch) plus its compile time and FLOPs. ``--compare`` runs
each framework in a worker process of its own and their repetitions alternately, so a load change
on a shared machine hits both alike while neither shares the other's allocator, threads or caches,
and prints JAX images/s divided by PyTorch images/s. Every process first applies
``awing_jax.runtime.retain_freed_memory()`` as the project's programs do (``--malloc default``
leaves glibc as it is).

Threads: ``--threads N`` pins the whole process to N cores (``os.sched_setaffinity``, before JAX
starts its thread pools) and sets ``torch.set_num_threads(N)``; without it both use every core the
process may run on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from awing_jax.runtime import retain_freed_memory

# The FAN of the AWing paper (tiny: the test config's size, for a quick smoke run).
PAPER = {"stacks": 4, "features": 256, "depth": 4, "input_size": 256, "batch": 8}
TINY = {"stacks": 1, "features": 16, "depth": 1, "input_size": 32, "batch": 8}
_MARK = "@@bench "  # prefix of a worker's messages on its stdout


@dataclasses.dataclass
class Runner:
    """One framework's benchmark: ``run()`` does one repetition and waits for its result."""

    name: str
    run: Callable[[], None]
    compile_seconds: float | None = None
    flops: float | None = None
    times: list[float] = dataclasses.field(default_factory=list)
    worker: Any = None  # the process running it under --compare


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--stacks", type=int)
    p.add_argument("--features", type=int)
    p.add_argument("--depth", type=int)
    p.add_argument("--input_size", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--landmarks", type=int, default=98, help="98 = WFLW (99 output channels)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--threads", type=int, default=0, help="0 = every core the process may use")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions after one warm-up")
    p.add_argument("--framework", choices=("jax", "torch"), default="jax")
    p.add_argument("--compare", action="store_true", help="both frameworks, alternating reps")
    p.add_argument("--tiny", action="store_true", help="the tiny test-size FAN")
    p.add_argument("--conv_lowering", choices=("xla", "matmul", "winograd", "auto"),
                   default="auto", help="the JAX model's model.conv_lowering")
    p.add_argument("--peak_size", type=int, default=2048,
                   help="side of the square matmul that measures the f32 peak (GFLOP/s)")
    p.add_argument("--malloc", choices=("retain", "default"), default="retain",
                   help="retain: awing_jax.runtime.retain_freed_memory() in every benchmark "
                   "process, as train.py/evaluate.py/predict.py do; default: glibc's settings")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    defaults = TINY if args.tiny else PAPER
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.threads:
        os.sched_setaffinity(0, range(args.threads))
    return args


def torch_device() -> str:
    """Where the PyTorch reference runs: the GPU when torch sees one, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_sync(device: str) -> None:
    """Waits for queued GPU work, so that a repetition's time includes it."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best-of-``repeats`` GFLOP/s of a ``size``-square float32 matmul in jnp and in torch."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    ja = jnp.asarray(a)
    jdot = jax.jit(jnp.dot)
    jdot(ja, ja).block_until_ready()
    ta = torch.from_numpy(a)
    torch.mm(ta, ta)
    best = {"jax": float("inf"), "torch": float("inf")}
    for _ in range(repeats):
        start = time.perf_counter()
        jdot(ja, ja).block_until_ready()
        best["jax"] = min(best["jax"], time.perf_counter() - start)
        start = time.perf_counter()
        torch.mm(ta, ta)
        best["torch"] = min(best["torch"], time.perf_counter() - start)
    return {k: 2 * size**3 / t / 1e9 for k, t in best.items()}


def peak_memory() -> str:
    """Host peak RSS, and the JAX device's peak when it reports one (GPU)."""
    text = f"maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        text += f", device peak {stats['peak_bytes_in_use'] / 2**20:.0f} MiB"
    return text


def _child_command(module: str, framework: str) -> list[str]:
    """This benchmark's own command line for one framework, as a worker process."""
    argv = [a for a in sys.argv[1:] if a != "--compare"]
    return [sys.executable, "-m", module, *argv, "--framework", framework, "--worker"]


def _report(message: dict) -> None:
    print(_MARK + json.dumps(message), flush=True)


def _serve(runner: Runner) -> None:
    """Worker side of ``--compare``: one repetition per ``run`` line on stdin."""
    _report({"compile_seconds": runner.compile_seconds, "flops": runner.flops,
             "memory": peak_memory()})
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        runner.run()
        _report({"seconds": time.perf_counter() - start})
    _report({"memory": peak_memory()})


class _Worker:
    """A framework's benchmark in its own process (its own allocator, threads and caches)."""

    def __init__(self, module: str, name: str):
        self.name = name
        self.process = subprocess.Popen(_child_command(module, name), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def receive(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(_MARK):
                return json.loads(line[len(_MARK):])
            print(f"[{self.name}] {line}", end="")
        raise RuntimeError(f"the {self.name} benchmark process exited with code "
                           f"{self.process.wait()} before reporting")

    def send(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()


def run(args: argparse.Namespace, what: str, prepare: dict[str, Callable[..., Runner]],
        module: str) -> None:
    """Times ``prepare[framework](args).run``; ``module`` is the script's ``python -m`` name.

    With ``--compare`` each framework runs in a worker process of its own (the same command with
    ``--framework NAME --worker``) and the two take turns, one repetition each: the same load on
    a shared machine hits both, and neither inherits the other's allocator state or threads.
    """
    if args.malloc == "retain":
        retain_freed_memory()
    if args.threads and (args.framework == "torch" or args.compare):
        import torch

        torch.set_num_threads(args.threads)
    if args.worker:
        runner = prepare[args.framework](args)
        runner.run()  # warm-up (and, for torch, first-touch allocation)
        _serve(runner)
        return

    import jax
    import torch

    load_start = os.getloadavg()
    print(f"{what}: FAN stacks={args.stacks} features={args.features} depth={args.depth} "
          f"input={args.input_size} batch={args.batch} landmarks={args.landmarks} "
          f"dtype={args.dtype}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, process affinity "
          f"{len(os.sched_getaffinity(0))}, torch threads {torch.get_num_threads()}, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, malloc {args.malloc}")
    peak = matmul_peak_gflops(args.peak_size)
    print(f"f32 matmul peak ({args.peak_size}^2): jnp {peak['jax']:.1f} GFLOP/s, "
          f"torch {peak['torch']:.1f}")

    if args.compare:
        runners = []
        for name in ("jax", "torch"):
            # One at a time: JAX's compile must not share the cores with PyTorch's warm-up.
            worker = _Worker(module, name)
            info = worker.receive()
            runner = Runner(name, lambda w=worker: (w.send("run"), w.receive())[1]["seconds"],
                            info["compile_seconds"], info["flops"])
            runner.worker = worker
            runners.append(runner)
            print(f"{name}: prepared in its own process; {info['memory']}", flush=True)
        for _ in range(args.reps):
            for runner in runners:
                runner.times.append(runner.run())
        memory = {}
        for runner in runners:
            runner.worker.send("quit")
            memory[runner.name] = runner.worker.receive()["memory"]
            runner.worker.process.wait()
        runners[1].flops = runners[1].flops or runners[0].flops  # same network
    else:
        runner = prepare[args.framework](args)
        runner.run()
        print(f"{args.framework}: prepared; {peak_memory()}", flush=True)
        for _ in range(args.reps):
            start = time.perf_counter()
            runner.run()
            runner.times.append(time.perf_counter() - start)
        runners = [runner]
        memory = {runner.name: peak_memory()}

    rates = {}
    for runner in runners:
        median = statistics.median(runner.times)
        rates[runner.name] = args.batch / median
        line = (f"{runner.name:5s} {median * 1e3:9.1f} ms  {rates[runner.name]:7.2f} images/s  "
                f"reps [{', '.join(f'{t * 1e3:.0f}' for t in runner.times)}] ms")
        if runner.compile_seconds is not None:
            line += f"  compile {runner.compile_seconds:.1f} s"
        if runner.flops:
            achieved = runner.flops / median / 1e9
            line += (f"  {runner.flops / 1e9:.0f} GFLOP -> {achieved:.1f} GFLOP/s = "
                     f"{100 * achieved / peak['jax']:.0f}% of jnp matmul peak")
        print(line + f"  {memory[runner.name]}")
    if args.compare:
        print(f"ratio JAX/PyTorch images/s: {rates['jax'] / rates['torch']:.2f}")
    print(f"load average start {load_start[0]:.2f} end {os.getloadavg()[0]:.2f}")


def network_flops(lower: Callable[[str], Any]) -> float | None:
    """FLOPs of the network as direct convolutions, from XLA's cost analysis of ``lower("xla")``.

    ``lower(conv_lowering)`` returns a ``Lowered`` of the benchmarked function built with that
    convolution lowering; "xla" makes every convolution count as what it computes (Winograd
    products do 2.25x fewer multiplications for the same 3x3 convolution, and counting those
    would understate the work). Both frameworks' rows use this count.
    """
    analysis = lower("xla").cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0] if analysis else {}
    return (analysis or {}).get("flops")
