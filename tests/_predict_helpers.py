"""What the prediction tests share: a tiny randomly initialised checkpoint on disk."""

import os

from awing_jax import convert
from awing_jax.models import create_model
from awing_jax.models.common import random_variables
from configs import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
