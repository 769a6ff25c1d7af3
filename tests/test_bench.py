"""The speed benchmarks' --compare mode: two worker processes, one report (no timing asserted)."""

import os
import re
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["bench.train_step", "bench.inference"])
def test_compare_runs_each_framework_in_its_own_process(module):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user
    run = subprocess.run(
        [sys.executable, "-m", module, "--tiny", "--compare", "--reps", "2"],
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
    expected = float(rows["jax"].group(3)) / float(rows["torch"].group(3))
    assert ratio == pytest.approx(expected, abs=0.006), out
    assert "malloc retain" in out
