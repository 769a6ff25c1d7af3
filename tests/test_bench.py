"""The speed benchmarks' --compare mode: two worker processes, one report (no timing asserted)."""

import os
import re
import subprocess
import sys

import pytest

from tests._env import xla_flags

# The smallest work that still exercises everything: the tiny preset's one-level hourglass with
# 19 landmarks (AFLW-19, boundary channel included) and 2 images instead of 98 landmarks and 8
# images, a small matmul for the peak, and XLA's own convolutions (they compile in about half the
# time of the CPU Winograd lowering that "auto" picks). Compiling the JAX step dominates.
SMALL = ["--tiny", "--landmarks", "19", "--batch", "2", "--peak_size", "256",
         "--conv_lowering", "xla"]


def _one_device_env():
    """One CPU device, as a user has; the suite's compile options kept (these runs test the
    harness, not the compiler's output)."""
    return dict(os.environ, XLA_FLAGS=xla_flags(1))


@pytest.mark.parametrize("module", ["bench.train_step", "bench.inference"])
def test_compare_runs_each_framework_in_its_own_process(module):
    env = _one_device_env()
    run = subprocess.run(
        [sys.executable, "-m", module, *SMALL, "--compare", "--reps", "2"],
        capture_output=True, text=True, timeout=600, check=False, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    rows = {m.group(1): m for m in re.finditer(
        r"^(jax|torch)\s+([\d.]+) ms\s+([\d.]+) images/s\s+reps \[([\d, ]+)\] ms", out, re.M)}
    assert set(rows) == {"jax", "torch"}, out
    for name, row in rows.items():
        assert len(row.group(4).split(",")) == 2, out  # --reps 2, each timed in its worker
        assert float(row.group(2)) > 0 and float(row.group(3)) > 0, out
        assert f"{name}: prepared in its own process" in out
    ratio = float(re.search(r"ratio JAX/PyTorch images/s: ([\d.]+)", out).group(1))
    jax_rate, torch_rate = float(rows["jax"].group(3)), float(rows["torch"].group(3))
    expected = jax_rate / torch_rate
    # the rates are printed rounded to 0.005 images/s, the ratio to 0.005
    slack = expected * (0.005 / jax_rate + 0.005 / torch_rate) + 0.005
    assert abs(ratio - expected) <= slack, out
    assert "malloc retain" in out


def test_conv_lowering_smoke():
    env = _one_device_env()
    run = subprocess.run([sys.executable, "-m", "bench.conv_lowering", "--tiny", "--reps", "2"],
                         capture_output=True, text=True, timeout=600, check=False, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = re.findall(r"^\s*(\dx\d [\d>-]+ @\d+)\s+(forward|fwd\+bwd)\s+([\d.]+)\s+([\d.]+)\s+"
                      r"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.e+-]+)$", run.stdout, re.M)
    assert len(rows) == 6, run.stdout  # three layers, two passes each
    for _, _, lax_ms, ours_ms, ratio, _, _, diff in rows:
        lax_ms, ours_ms, ratio = float(lax_ms), float(ours_ms), float(ratio)
        # the printed times are rounded to 0.5 us, the ratio to 0.005
        slack = lax_ms / ours_ms * (5e-4 / lax_ms + 5e-4 / ours_ms) + 0.005
        assert abs(ratio - lax_ms / ours_ms) <= slack
        assert float(diff) < 1e-4  # the two forms compute the same convolution
