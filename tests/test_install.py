"""``pip install`` of the repository gives a working library outside the checkout.

The package is installed from a copy of the checkout into a fresh virtual environment that sees
this environment's libraries (a ``.pth`` file) and gets no dependency from an index
(``--no-deps --no-index``): what is tested is awing-jax's own packaging (the packages, the renamed
``datasets/`` and ``configs/`` folders, the console scripts, the declared dependencies), not the
download of JAX. Everything then runs from a directory outside the checkout.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Files of a checkout that are not sources (outputs, caches, environments).
NOT_SOURCES = (".git", ".venv", "build", "runs", "workdir*", "__pycache__", "*.egg-info",
               ".hypothesis", ".pytest_cache", ".ruff_cache", ".whl", "*.pyc")

# Run by the installed environment's python, in a directory outside the checkout.
CHECKS = textwrap.dedent("""
    import json, os, sys
    import importlib.metadata as metadata

    import jax
    import jax.numpy as jnp

    import awing_jax
    from awing_jax import config_files, dataset_builders
    from awing_jax.losses import adaptive_wing_loss
    from awing_jax.models.fan import FAN

    out = {"awing_jax": awing_jax.__file__, "cwd": os.getcwd()}
    # d/dp AWing(p, y=0) at p = 0.3 < theta
    out["grad"] = float(jax.grad(lambda p: adaptive_wing_loss(p, jnp.zeros(())))(0.3))
    # The FAN traced through init and apply (its numerics are tests/test_fan.py's; compiling it
    # would only cost time here).
    model = FAN(5, num_stacks=1, features=8, depth=1)
    images = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
    heatmaps = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
    out["fan"] = [list(h.shape) for h in jax.tree_util.tree_leaves(heatmaps)]
    from awing_datasets.wflw import Builder
    out["builder"] = f"{Builder.__module__}.{Builder.__name__}"
    out["builders_package"] = dataset_builders.package()
    out["configs_package"] = config_files.package()
    out["tiny_features"] = config_files.module("tiny").get_config().model.features
    out["wflw_config"] = config_files.path("configs/wflw.py")
    out["top_level_datasets_imported"] = "datasets" in sys.modules
    out["requires"] = metadata.requires("awing-jax")
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, bin dir, outside dir) of a fresh environment with awing-jax installed."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    with open(os.path.join(site.stdout.strip(), "_outer_environment.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--no-index", "--no-build-isolation", str(source)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outside = root / "elsewhere"
    outside.mkdir()
    return python, venv / "bin", outside


def test_library_works_outside_the_checkout(installed):
    python, _, outside = installed
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ""}
    env.pop("XLA_FLAGS", None)
    done = subprocess.run([str(python), "-c", CHECKS], cwd=outside, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    site = os.path.dirname(os.path.dirname(out["awing_jax"]))
    assert not out["awing_jax"].startswith(REPO) and "site-packages" in site
    # AWing for y = 0 below theta: omega ln(1 + p^alpha) -> omega alpha p^(alpha-1) / (1 + p^alpha)
    omega, alpha, p = 14.0, 2.1, 0.3
    assert out["grad"] == pytest.approx(omega * alpha * p ** (alpha - 1) / (1 + p**alpha),
                                        rel=1e-5)
    assert out["fan"] == [[2, 4, 4, 6]]  # one stack: (B, S/4, S/4, 5 landmarks + boundary)
    assert out["builder"] == "awing_datasets.wflw.wflw.Wflw"
    assert (out["builders_package"], out["configs_package"]) == ("awing_datasets", "awing_configs")
    assert out["tiny_features"] == 16
    assert out["wflw_config"].startswith(os.path.join(site, "awing_configs"))
    assert out["top_level_datasets_imported"] is False
    # PyTorch only as an extra; the runtime set has JAX and no test tools.
    plain = [r for r in out["requires"] if "extra ==" not in r]
    assert any(r.startswith("jax") for r in plain)
    assert not any(r.split(">")[0].split("=")[0].strip() in ("torch", "pytest", "ruff")
                   for r in plain)
    assert any(r.startswith("torch") and 'extra == "torch"' in r for r in out["requires"])


@pytest.mark.parametrize("script, expected", [
    ("awing-train", "--config"), ("awing-evaluate", "--workdir"), ("awing-predict", "--image"),
    ("awing-convert", "--pth"), ("awing-build-dataset", "--manual_dir"),
])
def test_console_scripts_answer_help(installed, script, expected):
    _, bin_dir, outside = installed
    assert os.path.isfile(bin_dir / "awing-export")
    done = subprocess.run([str(bin_dir / script), "--help"], cwd=outside, capture_output=True,
                          text=True, timeout=300)
    # absl's --help exits with status 1, argparse's with 0; either way the flags are listed
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert expected in done.stdout
