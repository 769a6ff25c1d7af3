"""How the command lines report a user's mistake: one ``error: ...`` line, exit status 2.

Every console entry point (``awing-train`` ... ``awing-build-dataset``, and the top-level
``train.py``, ``evaluate.py``, ``predict.py``) goes through :func:`run`. Library code raises
:class:`UserError` (or a subclass) for input the user can fix: a missing file, a dataset that is not
built, an unknown split, a file that is not a checkpoint. :func:`run` prints the message as one
line, without a traceback, and exits with :data:`EXIT_USER_ERROR`; anything else is a bug and keeps
its traceback.

The entry points also keep the libraries quiet (:func:`quiet_libraries`): absl, Orbax and TFDS
log their INFO and WARNING messages (Orbax's "read only" notes, TFDS's "Downloading and preparing
dataset") only when ``--verbosity`` asks for them.
"""

from __future__ import annotations

import difflib
import itertools
import logging
import os
import sys
from collections.abc import Callable, Sequence

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake the user can fix; the command line prints it as one ``error:`` line."""


class DatasetNotBuiltError(UserError, FileNotFoundError):
    """A dataset is not built in the data dir (the message says how to build it)."""


class UnknownSplitError(UserError, ValueError):
    """A split that the built dataset does not have (the message lists those it has)."""


# Loggers of the libraries that log at INFO/WARNING on a normal run (Python logging names).
_LIBRARY_LOGGERS = ("absl", "orbax", "tensorflow_datasets", "jax", "grain", "etils")


def quiet_libraries(verbose: bool = False, *, progress_bars: bool = True) -> None:
    """Library INFO and WARNING messages off (ERROR and above stay), unless ``verbose``;
    ``progress_bars=False`` also turns off TFDS's progress bars (it imports TFDS)."""
    from absl import logging as absl_logging

    if verbose:
        return
    absl_logging.set_verbosity(absl_logging.ERROR)
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not progress_bars:
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()


def one_line(message: str) -> str:
    """``message`` as one line: continuation lines joined with ``; ``."""
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    text = lines[0]
    for previous, line in itertools.pairwise(lines):
        text += (" " if previous.endswith(":") else "; ") + line
    return text


def report(error: BaseException | str) -> int:
    """Prints ``error: <message>`` on stderr; returns :data:`EXIT_USER_ERROR`."""
    print(f"error: {one_line(str(error))}", file=sys.stderr, flush=True)
    return EXIT_USER_ERROR


def config_override_message(argv: Sequence[str], key_error: Exception) -> str:
    """One line for a ``--config.a.b=v`` override naming no field (ml_collections' KeyError or
    AttributeError, whose message ends with its "Did you mean ..." suggestion)."""
    error = key_error
    while error.args and isinstance(error.args[0], BaseException):  # AttributeError(KeyError)
        error = error.args[0]
    text = str(error.args[0]) if error.args else str(error)
    field = text.splitlines()[0].strip("'\"") if text.strip() else "?"
    bad = [a.split("=", 1)[0] for a in argv if a.lstrip("-").startswith("config.")
           and field in a.split("=", 1)[0].split(".")[1:]]
    name = bad[0] if bad else f"--config.{field}"
    hint = one_line(text).partition(";")[2].strip()
    return (f"{name}: the config has no field {field!r}" + (f"; {hint}" if hint else "")
            + " (see the config file's fields)")


def flag_error_message(error: Exception, flag_values) -> str:
    """A flags parsing error in words, with the closest field for a mistyped ``--config.*``."""
    name = getattr(error, "flagname", None) or ""
    if name.startswith("config.") and "config" in flag_values:
        path, node = [], flag_values["config"].value
        for part in name.split(".")[1:]:
            keys = list(node.keys()) if hasattr(node, "keys") else []
            if part not in keys:
                close = difflib.get_close_matches(part, keys, n=1)
                where = ".".join(["config", *path])
                hint = f"; did you mean --{where}.{close[0]}?" if close else ""
                return (f"--{name}: the config has no field {where}.{part}{hint} (fields of "
                        f"{where}: {', '.join(sorted(keys))})")
            path.append(part)
            node = node[part]
    return f"{error} (see --help)"


def absl_flags_parser(argv: Sequence[str]) -> list[str]:
    """Parses absl flags like absl's default, but a bad flag is one ``error:`` line, status 2."""
    from absl import flags

    try:
        return flags.FLAGS(list(argv))
    except flags.Error as e:
        sys.exit(report(flag_error_message(e, flags.FLAGS)))
    except (KeyError, AttributeError) as e:  # ml_collections: an override of no config field
        sys.exit(report(config_override_message(argv, e)))


def call(main: Callable[..., int | None], *args) -> int:
    """``main(*args)``'s status; a :class:`UserError` or absl ``UsageError`` is reported as one
    line and gives :data:`EXIT_USER_ERROR`."""
    from absl import app

    try:
        return main(*args) or 0
    except UserError as e:
        return report(e)
    except app.UsageError as e:
        return report(f"{e} (see --help)")


def run(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None, *,
        progress_bars: bool = True) -> None:
    """Runs an absl ``main(argv)`` as a console entry point: flags parsed (one-line errors),
    libraries quiet unless ``--verbosity`` is given (``progress_bars``: see
    :func:`quiet_libraries`), user errors one line; exits with main's status."""
    from absl import app, flags

    # --help: the command's docstring and flags, also for a console script (whose __main__ is a
    # generated wrapper) and for train.py & co. (whose flags live in awing_jax.cli.*).
    command = sys.modules.get(getattr(main, "__module__", ""), None)
    script = sys.modules.get("__main__")
    if command is not None:
        if script is not None and not script.__doc__:
            script.__doc__ = command.__doc__
        for flag in flags.FLAGS.get_key_flags_for_module(command.__name__):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    def wrapped(args):
        quiet_libraries(flags.FLAGS["verbosity"].present > 0, progress_bars=progress_bars)
        sys.exit(call(main, args))

    app.run(wrapped, argv=None if argv is None else list(argv), flags_parser=absl_flags_parser)
