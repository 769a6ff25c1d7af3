"""Converts weights of the reference PyTorch FAN into an awing-jax checkpoint.

    awing-convert --pth WFLW_4HG.pth --out runs/wflw_reference     # python -m awing_jax.convert
    python evaluate.py --workdir runs/wflw_reference

A ``.pth`` needs PyTorch (``pip install 'awing-jax[torch]'``); an ``.npz`` of the same keys does
not. See :mod:`awing_jax.convert` for the key mapping.
"""

from absl import app, flags

from awing_jax import errors

flags.DEFINE_string("pth", None, "State dict file (.pth, .pt or .npz).", required=True)
flags.DEFINE_string("out", None, "Workdir to write checkpoints/0/ into.", required=True)
flags.DEFINE_integer("num_landmarks", 98, "Landmarks L (98 WFLW, 68 300W, 29 COFW, 19 AFLW).")
flags.DEFINE_integer("num_stacks", 4, "Hourglasses (the reference's num_modules).")
flags.DEFINE_integer("features", 256, "Hourglass width.")
flags.DEFINE_integer("depth", 4, "Hourglass levels.")
flags.DEFINE_integer("input_size", 256, "Model input side S stored in the config.")
flags.DEFINE_string("crop_protocol", "awing_wflw", "Crop protocol stored in the config "
                    "(awing_jax.crop.PROTOCOLS): the authors' WFLW geometry by default.")
FLAGS = flags.FLAGS


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from awing_jax import convert

    layout = dict(num_landmarks=FLAGS.num_landmarks, num_stacks=FLAGS.num_stacks,
                  features=FLAGS.features, depth=FLAGS.depth)
    try:
        variables = convert.convert_state_dict(convert.load_state_dict(FLAGS.pth), **layout)
        config = convert.conversion_config(**layout, input_size=FLAGS.input_size,
                                           crop_protocol=FLAGS.crop_protocol)
    except ValueError as e:  # e.g. a layout without a scheme of that many landmarks
        raise errors.UserError(str(e)) from None
    where = convert.write_checkpoint(variables, config, FLAGS.out)
    print(f"wrote {where} ({config.scheme}, {FLAGS.num_stacks} stacks, crop protocol "
          f"{config.crop_protocol}); "
          f"evaluate with: python evaluate.py --workdir {FLAGS.out}")
    return 0


def run(argv=None) -> None:
    """Console entry point (``awing-convert``)."""
    errors.run(main, argv)


if __name__ == "__main__":
    run()
