"""Tests of the PyTorch reference layout (awing_jax/torch_reference.py) and the weight converter.

The converted flax model must reproduce the PyTorch model's outputs for every stack, with random
weights and non-trivial BatchNorm running statistics, on a small layout (2 stacks, 32 features,
depth 2, 19 landmarks) so that the test stays fast on a CPU.
"""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from awing_jax import checkpoint, convert
from awing_jax import torch_reference as torch_fan
from awing_jax.models.fan import FAN, coord_channels

LAYOUT = dict(num_landmarks=19, num_stacks=2, features=32, depth=2)
SIZE = 64
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _reference_model(seed: int = 0) -> torch_fan.FAN:
    """A random reference FAN in eval mode, BatchNorm with random affine and running statistics.

    The first stack's boundary bias is shifted so that about half of its boundary pixels pass the
    0.05 threshold: the next stack's masked coordinate channels then carry both values. The
    threshold falls in the middle of the widest gap between consecutive boundary values among the
    middle fifth, so that no pixel sits within float rounding of it: a pixel at the threshold would
    be masked on one side and not on the other for a difference in the last bit.
    """
    torch.manual_seed(seed)
    model = torch_fan.FAN(LAYOUT["num_stacks"], LAYOUT["num_landmarks"],
                          features=LAYOUT["features"], depth=LAYOUT["depth"]).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(1.0 + 0.2 * torch.randn(n))
                module.bias.copy_(0.2 * torch.randn(n))
                module.running_mean.copy_(0.3 * torch.randn(n))
                module.running_var.copy_(0.5 + 1.5 * torch.rand(n))
        values = np.sort(model(_images())[0][:, -1].numpy().ravel())
        n = values.size
        middle = values[2 * n // 5: 3 * n // 5 + 1]
        widest = int(np.argmax(np.diff(middle)))
        model.l0.bias[-1] += 0.05 - float(middle[widest] + middle[widest + 1]) / 2
    return model


def _images(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def reference():
    torch.set_num_threads(2)
    model = _reference_model()
    with torch.no_grad():
        outputs = [o.numpy() for o in model(_images())]
    return model, outputs


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, variables, x):
    return model.apply(variables, x, train=False)


def _flax_outputs(variables) -> list[np.ndarray]:
    x = jnp.asarray(_images().numpy().transpose(0, 2, 3, 1))
    outputs = _apply(FAN(**LAYOUT), variables, x)
    return [np.asarray(o).transpose(0, 3, 1, 2) for o in outputs]


def _assert_same_variables(a, b):
    flat_a = dict(jax.tree_util.tree_leaves_with_path(a))
    flat_b = dict(jax.tree_util.tree_leaves_with_path(b))
    assert flat_a.keys() == flat_b.keys()
    for key, value in flat_a.items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(flat_b[key]), err_msg=str(key))


def test_reference_layout_parameter_count_and_keys():
    model = torch_fan.FAN(4, 98)
    assert torch_fan.count_params(model) == 24_153_036
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["conv1.conv.weight"] == (64, 3 + 3, 7, 7)
    assert shapes["m0.coordconv.conv.weight"] == (256, 256 + 3, 1, 1)
    assert shapes["m3.coordconv.conv.weight"] == (256, 256 + 5, 1, 1)
    assert shapes["conv2.downsample.0.running_var"] == (64,)
    assert shapes["conv2.downsample.2.weight"] == (128, 64, 1, 1)
    assert shapes["m2.b2_plus_1.bn3.weight"] == (64,)
    assert shapes["l3.weight"] == (99, 256, 1, 1)
    assert {"bl2.weight", "al2.weight"} <= shapes.keys()
    absent = ("bl3", "al3", "conv3.downsample", "m0.b2_plus_2")
    assert not [k for k in shapes if k.startswith(absent)]


def test_reference_coordinate_channels_are_ours_with_x_and_y_swapped():
    boundary = np.random.default_rng(0).uniform(-0.2, 0.3, (2, 1, 8, 12)).astype(np.float32)
    theirs = torch_fan.add_coords(torch.zeros(2, 1, 8, 12), torch.from_numpy(boundary))
    theirs = theirs.numpy()[:, 1:].transpose(0, 2, 3, 1)
    ours = np.asarray(coord_channels(8, 12, jnp.asarray(boundary[:, 0])))
    np.testing.assert_allclose(theirs, ours[..., [1, 0, 2, 4, 3]], atol=1e-6)
    # The reference's "xx" varies along rows: constant along each row.
    assert np.all(theirs[0, :, :, 0] == theirs[0, :, :1, 0])


def test_converted_model_matches_pytorch_on_every_stack(reference):
    model, expected = reference
    variables = convert.convert_state_dict(model.state_dict(), **LAYOUT)
    # The test means something only if the first stack's boundary masks some pixels, not all;
    # and it is sound only if no pixel is within float rounding of the threshold.
    boundary = np.clip(expected[0][:, -1], 0, 1)
    assert 0.2 < np.mean(boundary > 0.05) < 0.8
    assert np.min(np.abs(boundary - 0.05)) > 1e-4
    for ours, theirs in zip(_flax_outputs(variables), expected, strict=True):
        assert ours.shape == theirs.shape == (2, LAYOUT["num_landmarks"] + 1, SIZE // 4, SIZE // 4)
        assert np.max(np.abs(ours - theirs)) <= 1e-4
        assert np.std(theirs) > 1e-2  # outputs far from trivially equal


@pytest.mark.parametrize("form", ["wrapped_data_parallel", "npz", "pth"])
def test_every_state_dict_form_converts_the_same(reference, tmp_path, form):
    model, _ = reference
    state_dict = model.state_dict()
    if form == "wrapped_data_parallel":
        source = {"state_dict": {f"module.{k}": v for k, v in state_dict.items()}, "epoch": 3}
    elif form == "npz":
        path = tmp_path / "weights.npz"
        np.savez(path, **{k: v.numpy() for k, v in state_dict.items()})
        source = convert.load_state_dict(str(path))
    else:
        path = tmp_path / "weights.pth"
        torch.save({"state_dict": state_dict}, path)
        source = convert.load_state_dict(str(path))
    _assert_same_variables(convert.convert_state_dict(source, **LAYOUT),
                           convert.convert_state_dict(state_dict, **LAYOUT))


def test_state_dict_that_does_not_fit_is_rejected_with_every_problem_named(reference):
    model, _ = reference
    state_dict = dict(model.state_dict())
    state_dict["head.extra.weight"] = torch.zeros(3, 2)
    del state_dict["l1.bias"]
    state_dict["m1.coordconv.conv.weight"] = torch.zeros(32, 35, 1, 1)
    with pytest.raises(convert.ConversionError) as error:
        convert.convert_state_dict(state_dict, **LAYOUT)
    message = str(error.value)
    assert "unused keys in the state dict (1)" in message and "head.extra.weight" in message
    assert "missing keys (1)" in message and "l1.bias (20,)" in message
    assert "m1.coordconv.conv.weight: expected (32, 37, 1, 1), got (32, 35, 1, 1)" in message


def test_wrong_layout_is_rejected(reference):
    state_dict = reference[0].state_dict()
    with pytest.raises(convert.ConversionError, match=r"l0.weight: expected \(99, 32, 1, 1\)"):
        convert.convert_state_dict(state_dict, **{**LAYOUT, "num_landmarks": 98})


def test_missing_weight_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        convert.load_state_dict(str(tmp_path / "nope.pth"))


def test_command_line_writes_a_checkpoint_that_restores(reference, tmp_path):
    model, _ = reference
    pth = tmp_path / "reference.pth"
    torch.save(model.state_dict(), pth)
    workdir = tmp_path / "converted"
    args = [f"--{k}={v}" for k, v in LAYOUT.items()]
    run = subprocess.run(
        [sys.executable, "-m", "awing_jax.convert", f"--pth={pth}", f"--out={workdir}",
         f"--input_size={SIZE}", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (workdir / "checkpoints" / "0" / "state").is_dir()

    manager = checkpoint.create_manager(str(workdir), read_only=True)
    step = checkpoint.resolve_step(manager, "best")
    assert step == 0
    config = checkpoint.restore_config(manager, step)
    assert (config.scheme, config.dataset, config.norm) == ("aflw19", "aflw19", "box")
    assert (config.decoder, config.target.mode) == ("reference", "reference")
    assert (config.model.num_stacks, config.model.features, config.model.depth) == (2, 32, 2)
    assert config.input_size == SIZE
    _assert_same_variables(checkpoint.restore_variables(manager, step),
                           convert.convert_state_dict(model.state_dict(), **LAYOUT))


def test_command_line_reports_a_missing_file(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "awing_jax.convert", f"--pth={tmp_path}/absent.pth",
         f"--out={tmp_path}/out"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "absent.pth" in run.stderr
