"""Builds a face-alignment dataset once: ``awing-build-dataset NAME --manual_dir DIR ...``.

The console script of the builders' ``build`` module (``python -m datasets.build`` in a
checkout); see that module for the flags.
"""

import sys

from awing_jax import dataset_builders, errors


def main(argv: list[str] | None = None) -> int:
    return dataset_builders.build_module().main(argv)


def run(argv: list[str] | None = None) -> None:
    """Console entry point (``awing-build-dataset``)."""
    sys.exit(errors.call(main, argv))


if __name__ == "__main__":
    run()
