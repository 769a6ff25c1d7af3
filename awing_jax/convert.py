"""Converts weights of the reference PyTorch FAN into an awing-jax checkpoint.

    python -m awing_jax.convert --pth WFLW_4HG.pth --out runs/wflw_reference   # or awing-convert
    python evaluate.py --workdir runs/wflw_reference

Reads a PyTorch state dict (a ``.pth`` plain, wrapped in ``{"state_dict": ...}`` and/or with the
``module.`` prefixes of ``nn.DataParallel``; or an ``.npz`` of the same keys, which needs no
torch), maps every tensor onto the parameters of :class:`awing_jax.models.fan.FAN` by the
key table in that module's docstring and writes ``OUT/checkpoints/0/{state,config}`` the way
training does, so ``evaluate.py`` and ``predict.py`` load it like a trained run.

Every key must be used and every parameter filled with the right shape; anything else is an error
that lists the offending keys and shapes. ``num_batches_tracked`` counters carry nothing the model
needs and are skipped.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from awing_jax.errors import UserError

# Module names of the flax FAN without an index, and their reference names.
_FIXED_NAMES = {
    "stem_conv": "conv1.conv",
    "stem_bn": "bn1",
    "bottom": "b2_plus_1",
    "downsample_bn": "downsample.0",
    "downsample_conv": "downsample.2",
}
# Indexed module names ``{stem}_{n}`` -> reference name as a function of n.
_INDEXED_NAMES = {
    "stem_block": lambda n: f"conv{n + 2}",
    "coord_conv": lambda n: f"m{n}.coordconv.conv",
    "hourglass": lambda n: f"m{n}",
    "skip": lambda n: f"b1_{n}",
    "down": lambda n: f"b2_{n}",
    "up": lambda n: f"b3_{n}",
    "head_block": lambda n: f"top_m_{n}",
    "head_conv": lambda n: f"conv_last{n}",
    "head_bn": lambda n: f"bn_end{n}",
    "heatmap_conv": lambda n: f"l{n}",
    "merge_features": lambda n: f"bl{n}",
    "merge_heatmaps": lambda n: f"al{n}",
    "bn": lambda n: f"bn{n + 1}",      # inside a ConvBlock
    "conv": lambda n: f"conv{n + 1}",  # inside a ConvBlock
}
_LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "bias"): "bias",
    ("params", "scale"): "weight",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
# PyTorch's BatchNorm step counter: no counterpart in flax, and no effect at inference.
_SKIPPED_SUFFIX = "num_batches_tracked"
# Number of landmarks -> the config module of the dataset whose scheme has that many points.
_CONFIG_MODULES = {"wflw": "wflw", "300w": "w300", "cofw": "cofw", "aflw19": "aflw19"}
_MAX_LISTED = 20


class ConversionError(UserError, ValueError):
    """The state dict does not fit the FAN: unused keys, missing keys or wrong shapes."""


class MissingWeightsError(UserError, FileNotFoundError):
    """The weight file does not exist."""


def reference_key(collection: str, path: tuple[str, ...]) -> str:
    """The reference state-dict key of a flax variable, e.g.
    ``("params", ("hourglass_0", "skip_4", "conv_1", "kernel"))`` -> ``"m0.b1_4.conv2.weight"``."""
    parts = []
    for name in path[:-1]:
        if name in _FIXED_NAMES:
            parts.append(_FIXED_NAMES[name])
            continue
        match = re.fullmatch(r"(.+)_(\d+)", name)
        if not match or match.group(1) not in _INDEXED_NAMES:
            raise KeyError(f"no reference name for module {name!r} in {'/'.join(path)}")
        parts.append(_INDEXED_NAMES[match.group(1)](int(match.group(2))))
    parts.append(_LEAF_NAMES[collection, path[-1]])
    return ".".join(parts)


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def normalise_state_dict(state_dict: Mapping) -> dict[str, np.ndarray]:
    """Unwraps ``{"state_dict": ...}``, strips ``module.`` prefixes, drops ``num_batches_tracked``
    and turns tensors into NumPy arrays."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    out = {}
    for key, value in state_dict.items():
        name = key.removeprefix("module.")
        if name.endswith(_SKIPPED_SUFFIX):
            continue
        if name in out:
            raise ConversionError(f"key {name!r} appears with and without the 'module.' prefix")
        out[name] = _to_numpy(value)
    return out


class NotACheckpointError(UserError, ValueError):
    """The weight file cannot be read as a state dict (not a PyTorch checkpoint or ``.npz``)."""


class TorchMissingError(UserError, ImportError):
    """A ``.pth`` needs PyTorch, which is not installed (an optional dependency)."""


def load_state_dict(path: str) -> Mapping:
    """The raw state dict in ``path``: an ``.npz`` of arrays, or anything ``torch.load`` reads
    (PyTorch is imported only here, for a ``.pth``).

    Raises:
      FileNotFoundError: no such file.
      TorchMissingError: a ``.pth`` without PyTorch installed.
      NotACheckpointError: the file is not a readable state dict.
    """
    if not os.path.isfile(path):
        raise MissingWeightsError(f"no such weight file: {path}")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as e:
            raise NotACheckpointError(f"{path}: not an .npz of arrays ({e})") from None
    try:
        import torch
    except ImportError:
        raise TorchMissingError(
            f"reading {path} needs PyTorch: pip install 'awing-jax[torch]' (or save the state "
            "dict as an .npz of NumPy arrays, same keys, which needs no torch)") from None
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many kinds (UnpicklingError, RuntimeError, ...)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NotACheckpointError(
            f"{path}: not a PyTorch checkpoint that torch.load reads ({type(e).__name__}: "
            f"{reason[:200]}); expected a state dict saved with torch.save") from None
    if not isinstance(state_dict, Mapping):
        raise NotACheckpointError(f"{path}: holds a {type(state_dict).__name__}, not a state "
                                  "dict (a mapping of parameter names to tensors)")
    return state_dict


@functools.lru_cache(maxsize=8)  # read only; a trace of the whole FAN per layout
def _abstract_variables(num_landmarks: int, num_stacks: int, features: int, depth: int):
    from awing_jax.models.fan import FAN

    model = FAN(num_landmarks, num_stacks=num_stacks, features=features, depth=depth)
    size = FAN.heatmap_stride * 2**depth  # the smallest valid input; parameter shapes do not
    # depend on it
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))


def _coordinate_permutation(in_channels: int, coords_start: int) -> np.ndarray:
    """Input-channel order taking the reference's (y, x, r[, y_b, x_b]) to ours (x, y, r[, x_b,
    y_b]) after ``coords_start`` data channels (see :mod:`awing_jax.models.fan`)."""
    order = np.arange(in_channels)
    c = coords_start
    order[[c, c + 1]] = order[[c + 1, c]]
    if in_channels - coords_start == 5:
        order[[c + 3, c + 4]] = order[[c + 4, c + 3]]
    return order


def _listing(title: str, lines: list[str]) -> str:
    shown = lines[:_MAX_LISTED]
    more = f"\n    ... and {len(lines) - len(shown)} more" if len(lines) > len(shown) else ""
    return f"  {title} ({len(lines)}):\n    " + "\n    ".join(shown) + more


def convert_state_dict(state_dict: Mapping, *, num_landmarks: int, num_stacks: int = 4,
                       features: int = 256, depth: int = 4) -> dict:
    """Maps a reference FAN state dict onto the flax :class:`~awing_jax.models.fan.FAN`.

    Args:
      state_dict: reference keys -> tensors or arrays; may be wrapped in ``{"state_dict": ...}``
        and carry ``module.`` prefixes.
      num_landmarks, num_stacks, features, depth: the model's layout (the reference's
        ``num_modules`` is ``num_stacks``).

    Returns:
      ``{"params", "batch_stats"}`` nested dicts of float32 NumPy arrays: conv kernels OIHW ->
      HWIO with the CoordConv input channels reordered, BatchNorm weight/bias -> scale/bias,
      running_mean/var -> mean/var.

    Raises:
      ConversionError: listing every unused key, missing key and shape mismatch.
    """
    tensors = normalise_state_dict(state_dict)
    abstract = _abstract_variables(num_landmarks, num_stacks, features, depth)
    flat = {}
    used, missing, mismatched = set(), [], []
    for collection in ("params", "batch_stats"):
        for path, leaf in traverse_util.flatten_dict(abstract[collection]).items():
            key = reference_key(collection, path)
            expected = leaf.shape
            if path[-1] == "kernel":
                expected = tuple(leaf.shape[i] for i in (3, 2, 0, 1))  # HWIO -> OIHW
            if key not in tensors:
                missing.append(f"{key} {expected}")
                continue
            used.add(key)
            value = tensors[key]
            if value.shape != expected:
                mismatched.append(f"{key}: expected {expected}, got {tuple(value.shape)}")
                continue
            value = value.astype(np.float32)
            if path[-1] == "kernel":
                value = value.transpose(2, 3, 1, 0)
                if path[0] == "stem_conv":
                    value = value[:, :, _coordinate_permutation(value.shape[2], 3)]
                elif path[0].startswith("coord_conv_"):
                    value = value[:, :, _coordinate_permutation(value.shape[2], features)]
            flat[(collection, *path)] = np.ascontiguousarray(value)
    unused = sorted(set(tensors) - used)
    if unused or missing or mismatched:
        problems = [("unused keys in the state dict", [f"{k} {tensors[k].shape}" for k in unused]),
                    ("missing keys", missing), ("shape mismatches", mismatched)]
        raise ConversionError(
            f"state dict does not fit FAN(num_landmarks={num_landmarks}, num_stacks={num_stacks}, "
            f"features={features}, depth={depth}):\n"
            + "\n".join(_listing(title, lines) for title, lines in problems if lines))
    variables = traverse_util.unflatten_dict(flat)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def conversion_config(*, num_landmarks: int, num_stacks: int = 4, features: int = 256,
                      depth: int = 4, input_size: int = 256, crop_protocol: str = "awing_wflw"):
    """The config stored with converted weights: the dataset config of the scheme with that many
    points, the given layout, the reference heatmap convention the released weights were
    trained with (targets and decoder) and the crop they were trained on: the authors' WFLW
    geometry (``awing_wflw``, docs/crop_protocols.md) by default."""
    from awing_jax import config_files, crop
    from awing_jax.landmarks import get_scheme

    scheme = get_scheme(num_landmarks).name
    config = config_files.module(_CONFIG_MODULES[scheme]).get_config()
    config.scheme = scheme
    config.input_size = input_size
    config.model.num_stacks = num_stacks
    config.model.features = features
    config.model.depth = depth
    config.model.coordconv = True
    config.model.boundary = True
    config.target.mode = "reference"
    config.decoder = "reference"
    config.crop_protocol = crop.check_protocol(crop_protocol)
    return config


def write_checkpoint(variables: dict, config, workdir: str, *, step: int = 0) -> str:
    """Writes ``{"params", "batch_stats"}`` and ``config`` as ``workdir/checkpoints/<step>``."""
    from awing_jax import checkpoint

    manager = checkpoint.create_manager(workdir)
    state = jax.tree_util.tree_map(jnp.asarray, variables)
    checkpoint.save(manager, step, state, None, config)
    manager.wait_until_finished()
    manager.close()
    return os.path.join(checkpoint.checkpoint_dir(workdir), str(step))


if __name__ == "__main__":
    from awing_jax.cli.convert import run

    run()
