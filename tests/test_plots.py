"""The plotting CLI runs headless and writes a real PNG."""

import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_loss_shapes_cli_writes_png(tmp_path):
    out = tmp_path / "figures" / "loss_shapes.png"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    result = subprocess.run([sys.executable, "-m", "awing_jax.plots", "loss-shapes", str(out)],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert out.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(out)
    height, width = image.shape[:2]
    assert 300 <= height <= 2000 and 600 <= width <= 3000 and width > height  # two panels
    assert image.shape[2] in (3, 4)
    assert np.ptp(image[..., :3]) > 0.5  # something was drawn


def test_cli_requires_a_figure_name():
    result = subprocess.run([sys.executable, "-m", "awing_jax.plots"], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 2
    assert "loss-shapes" in result.stderr


def test_gradients_cli_prints_the_table_and_writes_png(tmp_path):
    """The printed gradients against closed forms at d = 1e-4 (the last error column): L1's is
    1, Wing's w / (epsilon + d) -> w / epsilon = 5, L2's 2d, AWing's at y = 0
    omega * p * (d/eps)^(p-1) / (eps * (1 + (d/eps)^p)) with p = alpha = 2.1, about 1.2e-3."""
    out = tmp_path / "gradients.png"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    result = subprocess.run([sys.executable, "-m", "awing_jax.plots", "gradients", str(out)],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == str(out)
    rows = {cells[0]: [float(c) for c in cells[1:]]
            for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)
            if cells[0] in ("L2", "L1", "smooth L1", "Wing", "AWing, y = 0", "AWing, y = 0.5",
                            "AWing, y = 1")}
    assert len(rows) == 7
    d = 1e-4
    gradient_at_d = {name: values[5] for name, values in rows.items()}
    assert gradient_at_d["L1"] == 1.0
    assert gradient_at_d["L2"] == pytest.approx(2 * d, rel=1e-2)
    assert gradient_at_d["Wing"] == pytest.approx(10.0 / (2.0 + 20 * d), rel=1e-2)
    p = 2.1
    awing = 14.0 * p * d ** (p - 1) / (1.0 + d**p)
    assert gradient_at_d["AWing, y = 0"] == pytest.approx(awing, rel=1e-2)
    # Gradient descent: L1 and Wing keep flipping sign around the target, AWing at y = 0 settles.
    flips = {name: values[-1] for name, values in rows.items()}
    max_error = {name: values[-2] for name, values in rows.items()}
    assert flips["L1"] >= 10 and flips["Wing"] >= 5 and flips["AWing, y = 0"] == 0
    assert max_error["AWing, y = 0"] < 1e-3 < max_error["Wing"]
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert np.ptp(matplotlib.image.imread(out)[..., :3]) > 0.5
