"""Exports a checkpoint as a serialized ``jax.export`` function (see :mod:`awing_jax.export`).

    awing-export --checkpoint runs/wflw --out wflw.jaxexport     # python -m awing_jax.export
    python predict.py --export wflw.jaxexport --image photo.jpg
"""

from absl import app, flags

from awing_jax import errors
from awing_jax.export import DEFAULT_CONV_LOWERING, DEFAULT_PLATFORMS
from awing_jax.models.conv import LOWERINGS

flags.DEFINE_string("checkpoint", None, "Workdir holding checkpoints/.", required=True)
flags.DEFINE_string("step", "best", "'best', 'latest' or a step number.")
flags.DEFINE_string("out", None, "Output file, e.g. model.jaxexport.", required=True)
flags.DEFINE_list("platforms", list(DEFAULT_PLATFORMS), "Platforms to lower for.")
flags.DEFINE_enum("conv_lowering", DEFAULT_CONV_LOWERING, list(LOWERINGS),
                  "How convolutions run (docs/convolution_lowering.md).")
FLAGS = flags.FLAGS


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from awing_jax import export

    try:
        meta = export.export_checkpoint(FLAGS.checkpoint, FLAGS.out, step=FLAGS.step,
                                        platforms=tuple(FLAGS.platforms),
                                        conv_lowering=FLAGS.conv_lowering)
    except (FileNotFoundError, ValueError) as e:
        raise errors.UserError(str(e)) from None
    print(f"wrote {FLAGS.out} and {export.sidecar_path(FLAGS.out)}: {meta}")
    return 0


def run(argv=None) -> None:
    """Console entry point (``awing-export``)."""
    errors.run(main, argv)


if __name__ == "__main__":
    run()
