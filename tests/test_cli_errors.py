"""Every mistake at the command line is one ``error:`` line naming the thing and the fix, status 2.

The command lines run in this process through their console entry points (``run(argv)``: flag
parsing, quiet libraries, the error convention), each module imported afresh with its own flags
(train, evaluate, predict and convert define flags of the same names). One case needs a process of
its own: a mistyped ``--config.*`` field without ``--config``, which fails when the module defines
its flags (it costs no JAX import).
"""

import contextlib
import importlib
import logging
import os
import re
import subprocess
import sys

import absl.app  # noqa: F401  (its flags exist before any command line's import)
import cv2
import numpy as np
import pytest
from absl import flags

from awing_jax import errors
from tests._predict_helpers import write_tiny_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = "awing_jax.cli."


def _registry_tables(registry) -> dict:
    """A copy of absl's flag tables (flags by name, by module, key flags, parse state): restoring
    it puts back exactly the flag objects, and their defining modules, that were registered.
    Removing flags one by one cannot: absl finds a flag's defining module by name, so tables
    touched by a second definition of the same name keep pointing at the wrong module."""
    return {key: ({k: (list(v) if isinstance(v, list) else v) for k, v in table.items()}
                  if isinstance(table, dict) else table)
            for key, table in vars(registry).items()}


@contextlib.contextmanager
def fresh_cli(name: str):
    """``awing_jax.cli.<name>`` imported anew, with its own flags; a flag of the same name that
    another command line defined is taken out meanwhile (absl refuses a second definition).
    Afterwards the flag registry, ``sys.modules`` and the package attribute are as before."""
    import awing_jax.cli as package

    registry = flags.FLAGS
    saved = _registry_tables(registry)
    module_name = CLI + name
    previous = sys.modules.pop(module_name, None)
    # ``from awing_jax.cli import <name>`` reads the package's attribute before sys.modules.
    previous_attribute = package.__dict__.pop(name, None)
    # absl also skips (silently) a definition from a module of the same name: the earlier
    # import's flags must go too, so that this import defines its own.
    for flag in registry.flags_by_module_dict().get(module_name, []):
        if flag.name in registry:
            delattr(registry, flag.name)
    try:
        while True:
            try:
                module = importlib.import_module(module_name)
                break
            except flags.DuplicateFlagError as e:
                sys.modules.pop(module_name, None)
                delattr(registry, re.match(r"The flag '([^']+)'", str(e)).group(1))
        yield module
    finally:
        vars(registry).update(saved)
        if previous is not None:
            sys.modules[module_name] = previous
        else:
            sys.modules.pop(module_name, None)
        if previous_attribute is not None:
            setattr(package, name, previous_attribute)
        else:
            package.__dict__.pop(name, None)


def run_cli(name: str, *args, monkeypatch, capsys, stdout: list | None = None) -> str:
    """Runs ``<name> args`` through its console entry point; asserts status 2 and exactly one
    line on stderr, which starts with ``error:``; returns that line (and appends what went to
    stdout to ``stdout`` when given)."""
    capsys.readouterr()
    argv = [f"{name}.py", *[str(a) for a in args]]
    monkeypatch.setattr(sys, "argv", argv)  # as in a process: seen when the flags are defined
    with fresh_cli(name) as cli, pytest.raises(SystemExit) as exit_:
        cli.run(argv)
    out, err = capsys.readouterr()
    if stdout is not None:
        stdout.append(out)
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_.value.code == errors.EXIT_USER_ERROR, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A checkpoint of configs/tiny.py (dataset synthetic_faces)."""
    return write_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A data dir with a small synthetic_faces build (splits train and test)."""
    from datasets import build

    data_dir = str(tmp_path_factory.mktemp("data"))
    build.build("synthetic_faces", data_dir=data_dir, num_train=4, num_test=2, image_size=64)
    return data_dir


# ---------------------------------------------------------------------------------------------
# Datasets: not built, unknown split, empty manual dir


def test_train_on_a_dataset_that_is_not_built(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "data"
    empty.mkdir()
    line = run_cli("train", "--config", "tiny", "--config.dataset=wflw",
                   f"--config.data_dir={empty}", f"--workdir={tmp_path / 'run'}",
                   monkeypatch=monkeypatch, capsys=capsys)
    assert "'wflw' is not built in " + str(empty) in line
    assert f"python -m datasets.build wflw --manual_dir DIR --data_dir {empty}" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_evaluate_on_a_dataset_that_is_not_built(workdir, tmp_path, monkeypatch, capsys):
    line = run_cli("evaluate", f"--workdir={workdir}", "--dataset=w300",
                   f"--data_dir={tmp_path}", monkeypatch=monkeypatch, capsys=capsys)
    assert "'w300' is not built in " + str(tmp_path) in line
    assert "python -m datasets.build w300 --manual_dir DIR" in line


def test_evaluate_an_unknown_split(workdir, built, monkeypatch, capsys):
    out = []
    line = run_cli("evaluate", f"--workdir={workdir}", f"--data_dir={built}", "--split=tset",
                   monkeypatch=monkeypatch, capsys=capsys, stdout=out)
    assert "'synthetic_faces' has no split 'tset'; its splits: test, train" in line
    assert "NME" not in out[0]  # refused before the report's header is printed


def test_build_from_an_empty_manual_dir(tmp_path, capsys):
    from awing_jax.cli import build_dataset

    empty = tmp_path / "manual"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_:
        build_dataset.run(["cofw", "--manual_dir", str(empty), "--data_dir",
                           str(tmp_path / "data")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "COFW_train_color.mat" in lines[0] and str(empty) in lines[0]


# ---------------------------------------------------------------------------------------------
# Flags and configs


def test_config_field_typo_names_the_field_and_the_closest(tmp_path, monkeypatch, capsys):
    # --config given: the override fails while --config is parsed
    line = run_cli("train", "--config", "tiny", "--config.model.nmae=x",
                   monkeypatch=monkeypatch, capsys=capsys)
    assert line.startswith("error: --config.model.nmae: ") and '"name"' in line
    # the default config: ml_collections applies the override when the flag is defined
    line = run_cli("train", "--config.modle.num_stacks=1", monkeypatch=monkeypatch,
                   capsys=capsys)
    assert line.startswith("error: --config.modle.num_stacks: ") and '"model"' in line


def test_config_field_typo_without_config_flag_in_a_process():
    # ml_collections applies the overrides to the default config when the flag is defined
    done = subprocess.run([sys.executable, "train.py", "--config.modle.num_stacks=1"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --config.modle.num_stacks: ")
    assert '"model"' in lines[0]


def test_unknown_config_name(monkeypatch, capsys):
    line = run_cli("train", "--config=wflvv", monkeypatch=monkeypatch, capsys=capsys)
    assert "--config wflvv: no such config file" in line and "wflw" in line


def test_unknown_flag(workdir, monkeypatch, capsys):
    line = run_cli("evaluate", f"--workdir={workdir}", "--splt=test", monkeypatch=monkeypatch,
                   capsys=capsys)
    assert "splt" in line and "--help" in line


# ---------------------------------------------------------------------------------------------
# Files: missing, not a checkpoint, unreadable image


def test_evaluate_a_missing_workdir(tmp_path, monkeypatch, capsys):
    line = run_cli("evaluate", f"--workdir={tmp_path / 'nothing'}", monkeypatch=monkeypatch,
                   capsys=capsys)
    assert str(tmp_path / "nothing") in line and "no checkpoints/" in line


def test_convert_a_missing_file(tmp_path, monkeypatch, capsys):
    line = run_cli("convert", f"--pth={tmp_path / 'absent.pth'}", f"--out={tmp_path / 'o'}",
                   monkeypatch=monkeypatch, capsys=capsys)
    assert "no such weight file" in line and "absent.pth" in line


@pytest.mark.parametrize("content", [b"\x00\x01 not a checkpoint " * 20, b"PK\x03\x04 zip?"])
def test_convert_a_file_that_is_not_a_checkpoint(content, tmp_path, monkeypatch, capsys):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    line = run_cli("convert", f"--pth={path}", f"--out={tmp_path / 'o'}",
                   monkeypatch=monkeypatch, capsys=capsys)
    assert f"{path}: not a PyTorch checkpoint" in line and "torch.save" in line
    assert not (tmp_path / "o").exists()


def test_convert_a_pth_without_torch(tmp_path, monkeypatch, capsys):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"anything")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    line = run_cli("convert", f"--pth={path}", f"--out={tmp_path / 'o'}",
                   monkeypatch=monkeypatch, capsys=capsys)
    assert "needs PyTorch: pip install 'awing-jax[torch]'" in line and str(path) in line


def test_convert_an_npz_that_is_not_one(tmp_path, monkeypatch, capsys):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"not a zip file")
    line = run_cli("convert", f"--pth={path}", f"--out={tmp_path / 'o'}",
                   monkeypatch=monkeypatch, capsys=capsys)
    assert f"{path}: not an .npz of arrays" in line


def test_predict_an_unreadable_image(workdir, tmp_path, monkeypatch, capsys):
    text = tmp_path / "notes.jpg"
    text.write_text("a text file named like a photo")
    line = run_cli("predict", f"--checkpoint={workdir}", f"--image={text}",
                   "--box=0,0,20,20", "--noprogress", monkeypatch=monkeypatch, capsys=capsys)
    assert str(text) in line
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((8, 8, 3), np.uint8))
    line = run_cli("predict", f"--checkpoint={workdir}", f"--image={text}", f"--image={blank}",
                   "--box=0,0,20,20", "--noprogress", monkeypatch=monkeypatch, capsys=capsys)
    assert "--box applies to one photo" in line


def test_library_logs_stay_quiet_unless_asked(workdir, built, monkeypatch, capsys, caplog):
    """A successful evaluation prints its table; Orbax, absl and TFDS log nothing under ERROR
    (Orbax's read-only warnings, its INFO lines) unless --verbosity is given."""

    def evaluate(*extra):
        capsys.readouterr()
        caplog.clear()
        argv = ["evaluate.py", f"--workdir={workdir}", f"--data_dir={built}", *extra]
        monkeypatch.setattr(sys, "argv", argv)
        with fresh_cli("evaluate") as cli, pytest.raises(SystemExit) as exit_:
            cli.run(argv)
        captured = capsys.readouterr()
        assert exit_.value.code == 0, captured.err
        assert "synthetic_faces-test.json" in captured.out
        assert "Downloading and preparing" not in captured.out + captured.err
        return [r.getMessage() for r in caplog.records if r.levelno < logging.ERROR]

    assert evaluate() == []
    logged = evaluate("--verbosity=0")  # asked: Orbax's warnings come back
    assert any("read only" in message.lower() for message in logged), logged
