"""Fine-tuning from a converted checkpoint: config.init_from, config.init_landmark_map."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from awing_jax import checkpoint as ckpt
from awing_jax import convert, finetune, landmark_maps, trainer
from awing_jax.landmarks import get_scheme
from awing_jax.models import create_model
from awing_jax.models.fan import FAN
from configs import tiny
from tests._predict_helpers import random_variables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUT = dict(num_stacks=2, features=16, depth=1)
SIZE = 32
# The FANs built here run XLA's own convolutions, as the fine-tuning runs' configs/tiny.py does:
# they trace and compile in about half the time of the CPU Winograd lowering ("auto"), and every
# lowering has the same parameters (tests/test_runtime.py).
XLA = dict(conv_lowering="xla")
# WFLW's 98 points -> 300W's 68, typed out from the usual correspondence: every other cheek
# point, the upper brow edges, nose, eye corners and the upper/lower points beside each eye's
# top and bottom centre, the mouth.
WFLW_TO_300W = [
    0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32,
    33, 34, 35, 36, 37, 42, 43, 44, 45, 46,
    51, 52, 53, 54, 55, 56, 57, 58, 59,
    60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75,
    76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
]


def _random_variables(num_landmarks: int, seed: int = 3, **layout):
    """A FAN's variables, every leaf random (none at an initialiser's value; variances > 0),
    drawn on the host: no initialiser is compiled."""
    return random_variables(FAN(num_landmarks, **{**LAYOUT, **layout}, **XLA), SIZE, seed)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A converted-style checkpoint of a tiny 98-point FAN (what awing_jax.convert writes)."""
    path = str(tmp_path_factory.mktemp("converted"))
    variables = _random_variables(98)
    config = convert.conversion_config(num_landmarks=98, input_size=SIZE, **LAYOUT)
    convert.write_checkpoint(variables, config, path)
    return path, variables


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from datasets import build

    path = str(tmp_path_factory.mktemp("tfds"))
    build.build("synthetic_faces", data_dir=path, num_train=16, num_test=8, image_size=64)
    return path


def _config(data_dir, init_from, **overrides):
    config = tiny.get_config()
    config.data_dir = data_dir
    config.model.num_stacks = LAYOUT["num_stacks"]
    config.init_from = init_from
    config.init_landmark_map = "wflw_to_300w"
    config.update_from_flattened_dict(overrides)
    return config


def _expected_300w(variables):
    """The 98-point variables cut to 300W by the typed table (boundary channel kept last)."""
    keep = np.array([*WFLW_TO_300W, 98])
    flat = traverse_util.flatten_dict(variables)
    for path in flat:
        if path[-2].startswith("heatmap_conv_"):
            flat[path] = flat[path][..., keep]
        elif path[-2].startswith("merge_heatmaps_") and path[-1] == "kernel":
            flat[path] = flat[path][..., keep, :]
    return traverse_util.unflatten_dict(flat)


def _assert_trees_equal(actual, expected):
    a = traverse_util.flatten_dict(jax.device_get(actual))
    e = traverse_util.flatten_dict(expected)
    assert a.keys() == e.keys()
    for path, value in e.items():
        np.testing.assert_array_equal(np.asarray(a[path]), value, err_msg=str(path))


def test_wflw_to_300w_is_the_usual_table():
    found = landmark_maps.get_map("wflw_to_300w")
    assert list(found.indices) == WFLW_TO_300W
    # Mirroring commutes with the map: the map sends left/right pairs to left/right pairs.
    wflw = get_scheme("wflw").flip_permutation
    w300 = get_scheme("300w").flip_permutation
    assert [wflw[found.indices[i]] for i in range(68)] == [found.indices[w300[i]]
                                                           for i in range(68)]
    points = np.arange(98 * 2, dtype=float).reshape(98, 2)
    np.testing.assert_array_equal(landmark_maps.map_points(points, "wflw_to_300w"),
                                  points[WFLW_TO_300W])


def test_initial_state_is_the_mapped_checkpoint(converted, data_dir):
    path, variables = converted
    config = finetune.resolve_config(_config(data_dir, path), protocol_given=False)
    assert config.crop_protocol == "awing_wflw"  # kept from the converted checkpoint
    started = finetune.init_state(_state_of_random_weights(config), config)
    expected = _expected_300w(variables)
    _assert_trees_equal(started.params, expected["params"])
    _assert_trees_equal(started.batch_stats, expected["batch_stats"])
    # The test can fail: an unmapped (first 68 channels) start differs.
    assert not np.array_equal(
        np.asarray(started.params["heatmap_conv_0"]["bias"]),
        np.concatenate([variables["params"]["heatmap_conv_0"]["bias"][:68],
                        variables["params"]["heatmap_conv_0"]["bias"][98:]]))


def test_finetune_run_starts_from_the_converted_params(data_dir, tmp_path):
    """A run with learning rate 0 keeps its starting parameters: the saved checkpoint holds
    exactly the mapped converted ones, and the converted model's crop protocol.

    The run is configs/tiny.py's (one stack) at learning rate 0, which is an argument of the
    compiled step: it trains with the step the other tiny-FAN tests compile. Mapping a second
    stack's heads is checked in test_initial_state_is_the_mapped_checkpoint."""
    path = str(tmp_path / "converted")
    variables = _random_variables(98, num_stacks=1)
    convert.write_checkpoint(
        variables, convert.conversion_config(num_landmarks=98, input_size=SIZE,
                                             **{**LAYOUT, "num_stacks": 1}), path)
    config = _config(data_dir, path, **{
        "model.num_stacks": 1, "optimizer.learning_rate": 0.0,
        "num_train_steps": 2, "eval_every_steps": 2, "checkpoint_every_steps": 2})
    config = finetune.resolve_config(config, protocol_given=False)
    workdir = str(tmp_path / "ft")
    trainer.train_and_evaluate(config, workdir)
    manager = ckpt.create_manager(workdir, read_only=True)
    step = manager.latest_step()
    assert step == 2
    saved = ckpt.restore_variables(manager, step)
    _assert_trees_equal(saved["params"], _expected_300w(variables)["params"])
    assert ckpt.restore_config(manager, step).crop_protocol == "awing_wflw"
    # evaluate.py follows the checkpoint's protocol, with GT boxes too.
    result = subprocess.run(
        [sys.executable, "evaluate.py", "--workdir", workdir, "--checkpoint", "latest",
         "--box", "gt"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "box gt, crop awing_wflw" in result.stdout
    report = json.load(open(os.path.join(workdir, "eval", "synthetic_faces-test.json")))
    assert (report["crop_protocol"], report["box"]) == ("awing_wflw", "gt")
    assert report["splits"]["test"]["num_images"] == 8


def test_protocol_given_by_the_run_wins(converted, data_dir):
    path, _ = converted
    config = finetune.resolve_config(_config(data_dir, path), protocol_given=True)
    assert config.crop_protocol == "face_square"


def test_checkpoint_without_a_protocol_is_a_face_square_one(data_dir, tmp_path):
    config = convert.conversion_config(num_landmarks=68, input_size=SIZE, **LAYOUT)
    del config["crop_protocol"]
    convert.write_checkpoint(_random_variables(68), config, str(tmp_path))
    manager = ckpt.create_manager(str(tmp_path), read_only=True)
    assert ckpt.restore_config(manager, 0).crop_protocol == "face_square"
    run = finetune.resolve_config(_config(data_dir, str(tmp_path), init_landmark_map="",
                                          crop_protocol="awing_wflw"), protocol_given=False)
    assert run.crop_protocol == "face_square"


def _state_of_random_weights(config):
    """A train state of ``config``'s model with :func:`random_variables` in place of its
    initialisation (none is compiled): what fine-tuning keeps of a fresh state is whatever that
    state holds, so these tests need any distinct values, not the initialiser's. The real
    initialiser runs in the fine-tuning runs here and in tests/test_coco_landmarks.py."""
    return trainer.train_state(
        config, random_variables(create_model(config), config.input_size, seed=5), 16)


def _fresh_and_started(config):
    config = finetune.resolve_config(config, protocol_given=False)
    state = _state_of_random_weights(config)
    said = []
    started = finetune.init_state(state, config, announce=said.append)
    return state, started, said


def test_other_point_count_without_a_map_starts_only_the_heads_afresh(converted, data_dir):
    """98 -> 68 without init_landmark_map: every leaf that fits is the checkpoint's, the output
    heads (heatmap convolutions, their merge back) are the run's own initialisation."""
    path, variables = converted
    said = []
    config = finetune.resolve_config(_config(data_dir, path, init_landmark_map=""),
                                     protocol_given=False, announce=said.append)
    assert any("the output heads start afresh" in s for s in said)
    state, started, said = _fresh_and_started(config)
    fresh = traverse_util.flatten_dict(jax.device_get(state.params))
    got = traverse_util.flatten_dict(jax.device_get(started.params))
    source = traverse_util.flatten_dict(variables["params"])
    # the leaves with one channel per landmark; the merge's bias (per feature) still fits
    heads = {p for p in got if p[0].startswith("heatmap_conv_")
             or (p[0].startswith("merge_heatmaps_") and p[1] == "kernel")}
    assert {p[0] for p in heads} == {"heatmap_conv_0", "heatmap_conv_1", "merge_heatmaps_0"}
    for p, value in got.items():
        np.testing.assert_array_equal(value, fresh[p] if p in heads else source[p], str(p))
    assert said == ["starting afresh (they do not fit init_from "
                    f"{path}): heatmap_conv_0, heatmap_conv_1, merge_heatmaps_0"]
    _assert_trees_equal(started.batch_stats, variables["batch_stats"])


def _forward(model):
    """``model``'s inference forward pass, compiled once (the test runs it more than once)."""
    return jax.jit(lambda variables, images: model.apply(variables, images, train=False))


def test_boundary_weights_without_the_boundary_compute_the_same_landmarks():
    """A boundary model whose boundary channel is nowhere on (bias -1000, not merged back) and
    the same weights mapped onto a model without the boundary channel give the same landmark
    heatmaps in every stack: dropping the channel drops exactly what it fed."""
    variables = _random_variables(98)
    flat = traverse_util.flatten_dict(variables)
    for path in flat:
        if path[-2].startswith("heatmap_conv_"):
            flat[path] = flat[path].copy()
            flat[path][..., 98] = -1000.0 if path[-1] == "bias" else 0.0
        elif path[-2].startswith("merge_heatmaps_") and path[-1] == "kernel":
            flat[path] = flat[path].copy()
            flat[path][..., 98, :] = 0.0
    variables = traverse_util.unflatten_dict(flat)
    mapped = finetune.map_channels(variables, None, num_source=98, boundary=True,
                                   keep_boundary=False)
    assert mapped["params"]["coord_conv_1"]["kernel"].shape[-2] == LAYOUT["features"] + 3
    images = np.random.default_rng(0).uniform(0, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    with_boundary = _forward(FAN(98, **LAYOUT, **XLA))(variables, images)
    forward_without = _forward(FAN(98, boundary=False, **LAYOUT, **XLA))
    without = forward_without(mapped, images)
    assert len(with_boundary) == len(without) == LAYOUT["num_stacks"]
    for a, b in zip(with_boundary, without, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a)[..., :98], atol=1e-5)
    # The test can fail: keeping the masked coordinate inputs' weights in place of the
    # feature ones changes stack 2.
    wrong = traverse_util.flatten_dict(mapped)
    kernel = variables["params"]["coord_conv_1"]["kernel"]
    wrong[("params", "coord_conv_1", "kernel")] = np.concatenate(
        [kernel[..., :LAYOUT["features"] + 1, :], kernel[..., -2:, :]], axis=-2)
    off = forward_without(traverse_util.unflatten_dict(wrong), images)
    assert not np.allclose(np.asarray(off[1]), np.asarray(with_boundary[1])[..., :98], atol=1e-3)


def test_run_without_boundary_starts_from_a_boundary_checkpoint(converted, data_dir):
    path, variables = converted
    _, started, said = _fresh_and_started(_config(data_dir, path, **{"model.boundary": False}))
    expected = finetune.map_channels(
        _expected_300w(variables), None, num_source=68, boundary=True, keep_boundary=False)
    _assert_trees_equal(started.params, expected["params"])
    assert said == []  # nothing started afresh


def test_weights_that_do_not_fit_are_refused(converted, data_dir):
    path, _ = converted
    config = _config(data_dir, path, **{"model.features": 32})
    state = _state_of_random_weights(config)
    with pytest.raises(finetune.InitError, match="do not fit"):
        finetune.init_state(state, config)


def test_bad_init_from_is_one_error_line(tmp_path):
    def error_lines(init_from):
        result = subprocess.run(
            [sys.executable, "train.py", "--config", "configs/tiny.py",
             f"--config.init_from={init_from}", "--workdir", str(tmp_path / "w")],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        return [line for line in result.stderr.splitlines() if line.startswith("error:")]

    missing = str(tmp_path / "no_such_run")
    assert error_lines(missing) == [f"error: init_from {missing}: no such directory"]
    empty = tmp_path / "empty"
    empty.mkdir()
    errors = error_lines(empty)
    assert len(errors) == 1 and errors[0].startswith(f"error: init_from {empty}: no checkpoint")
