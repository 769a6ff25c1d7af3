"""What the prediction tests share: a tiny randomly initialised checkpoint on disk."""

import os

import jax
import jax.numpy as jnp
import numpy as np

from awing_jax import convert
from awing_jax.models import create_model
from configs import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_variables(model, size: int, seed: int = 0) -> dict:
    """Variables of ``model`` (input ``size``²) with random weights scaled so that activations
    stay of order one, and non-trivial BatchNorm statistics (an initialised FAN's outputs are
    nearly flat). No ``model.init`` is compiled: only its shapes are traced."""
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = np.prod(leaf.shape[:-1])
            return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(np.float32)
        if name in ("scale", "var"):
            return rng.uniform(0.8, 1.2, leaf.shape).astype(np.float32)
        return (0.1 * rng.normal(size=leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def write_tiny_checkpoint(workdir: str, seed: int = 0) -> str:
    """A workdir with configs/tiny.py's model (1 stack, 16 features, 32² input) and
    :func:`random_variables`."""
    config = tiny.get_config()
    model = create_model(config, bn_axis_name=None)
    convert.write_checkpoint(random_variables(model, config.input_size, seed), config, workdir)
    return workdir


def main_in_process(*args) -> int:
    """The command line's ``main`` in this process (its flags restored afterwards)."""
    from absl.testing import flagsaver

    from awing_jax.cli import predict as cli

    with flagsaver.flagsaver():
        for name in ("image", "box"):  # repeatable flags: start empty
            cli.FLAGS[name].value = []
        return cli.main(cli.FLAGS(["predict.py", *args]))
