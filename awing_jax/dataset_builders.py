"""The dataset builders (the repository's ``datasets/`` folder), found in a checkout or installed.

In a checkout they are the top-level package ``datasets``; a ``pip install`` puts them in
``awing_datasets``, not to clash with the widely used ``datasets`` distribution. The library reaches
them only through this module, and the builders import their siblings relatively, so both work:

    dataset_builders.register("wflw")          # imports the builder (TFDS registers it)
    dataset_builders.build_module().build("synthetic_faces", data_dir=...)
"""

from __future__ import annotations

import functools
import importlib
import importlib.util

from awing_jax.config_files import find_package

CHECKOUT_PACKAGE = "datasets"
INSTALLED_PACKAGE = "awing_datasets"


@functools.cache
def package() -> str:
    """``"datasets"`` in a checkout, ``"awing_datasets"`` when installed. One process uses one
    of them (TFDS refuses a builder registered twice)."""
    return find_package(CHECKOUT_PACKAGE, INSTALLED_PACKAGE, "build.py")


def build_command() -> str:
    """The command line that builds datasets, as the user would type it."""
    try:
        checkout = package() == CHECKOUT_PACKAGE
    except ImportError:
        checkout = False
    return "python -m datasets.build" if checkout else "awing-build-dataset"


def register(dataset: str):
    """Imports the builder of ``dataset`` (``"w300/ground_truth"``: its name before the slash)
    when awing-jax has one, which registers it with TFDS; returns its module or None (also
    without any builders, for a dataset registered some other way)."""
    try:
        name = f"{package()}.{dataset.partition('/')[0]}"
        if importlib.util.find_spec(name) is None:
            return None
    except (ImportError, ValueError):
        return None
    return importlib.import_module(name)


def build_module():
    """The module ``build`` of the builders (:func:`build`, ``NAMES``, ``main``)."""
    return importlib.import_module(f"{package()}.build")
