"""The training configs shipped with awing-jax, found by name or by path.

In a checkout the configs are the top-level ``configs/`` folder (the package ``configs``); a
``pip install`` puts the same files in the package ``awing_configs`` (a generic top-level
``configs`` would clash with other projects). Code that needs one of them goes through this
module, so it works both ways:

    config_files.module("wflw").get_config()     # the module of configs/wflw.py
    config_files.path("wflw")                    # its file, e.g. for --config
    config_files.path("configs/wflw.py")         # the same; an existing file is taken as given

A config file that builds on another one imports it with :func:`module` too (ml_collections loads
``--config FILE`` by path, outside any package, so a relative import would not work there).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Sequence

# Import names of the configs package: in a checkout, then installed.
CHECKOUT_PACKAGE = "configs"
INSTALLED_PACKAGE = "awing_configs"


def _package_dir(name: str) -> str | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.realpath(next(iter(spec.submodule_search_locations)))


def find_package(checkout_name: str, installed_name: str, marker: str) -> str:
    """The import name of one of awing-jax's top-level folders: ``checkout_name`` when it is the
    folder beside this checkout's ``awing_jax`` (and importable), else ``installed_name``.

    ``marker`` is a file name that the folder holds, to tell it from another project's package of
    the same generic name. Raises ImportError when neither is importable."""
    beside = os.path.realpath(os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), checkout_name))
    found = _package_dir(checkout_name)
    if found == beside and os.path.isfile(os.path.join(found, marker)):
        return checkout_name
    found = _package_dir(installed_name)
    if found and os.path.isfile(os.path.join(found, marker)):
        return installed_name
    raise ImportError(f"neither {installed_name} (installed with awing-jax) nor the checkout's "
                      f"{checkout_name}/ folder is importable; pip install awing-jax, or run "
                      "from the repository's root")


@functools.cache
def package() -> str:
    """``"configs"`` in a checkout, ``"awing_configs"`` when installed."""
    return find_package(CHECKOUT_PACKAGE, INSTALLED_PACKAGE, "base.py")


def directory() -> str:
    """The folder holding the config files."""
    return _package_dir(package())


def names() -> list[str]:
    """The shipped configs' names (file names without ``.py``)."""
    return sorted(n[:-3] for n in os.listdir(directory())
                  if n.endswith(".py") and not n.startswith("_"))


def module(name: str):
    """The shipped config module ``name`` (e.g. ``"wflw"``), imported as part of its package."""
    return importlib.import_module(f"{package()}.{name}")


def path(spec: str) -> str:
    """The file of a config given by path (``configs/wflw.py``, any existing file) or by name
    (``wflw``). A path that does not exist but names a shipped config (``configs/wflw.py``
    outside the checkout) is that config. Raises UserError naming the known configs."""
    from awing_jax.errors import UserError

    if os.path.isfile(spec):
        return spec
    stem = os.path.basename(spec)
    stem = stem[:-3] if stem.endswith(".py") else stem
    candidate = os.path.join(directory(), f"{stem}.py")
    if stem in names() and os.path.isfile(candidate):
        return candidate
    raise UserError(f"--config {spec}: no such config file, nor a config of awing-jax "
                    f"(known: {', '.join(names())})")


def resolve_argv(argv: Sequence[str], flag: str = "config") -> list[str]:
    """``argv`` with the value of ``--<flag>`` (``--flag=X`` or ``--flag X``, optionally
    ``X:params``) replaced by :func:`path` of it."""
    argv = list(argv)

    def resolved(value: str) -> str:
        spec, colon, params = value.partition(":")
        return path(spec) + colon + params

    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg.startswith(f"--{flag}="):
            argv[i] = f"--{flag}=" + resolved(arg.split("=", 1)[1])
        elif arg == f"--{flag}" and i + 1 < len(argv):
            argv[i + 1] = resolved(argv[i + 1])
    return argv
