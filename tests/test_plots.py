"""The plotting CLI runs headless and writes a real PNG."""

import os
import subprocess
import sys

import matplotlib.image
import numpy as np

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
