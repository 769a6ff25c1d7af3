"""End-to-end training: pmap equivalence, multi-host, kill-and-resume, divergence, evaluate.py.

The tests of the training loop itself (devices, processes, resume, divergence) train the tiny
CNN-6 regressor of configs/tiny_cnn6.py: the loop is the same for every model, and its step
compiles in about a fifth of the tiny FAN's time. The tiny FAN trains through train.py and
evaluate.py in test_training_lowers_loss_and_evaluate_writes_report, and in the fine-tuning,
COCO and loss-comparison tests.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from awing_jax import checkpoint as ckpt
from awing_jax import trainer
from bench.compile_options import XLA_DEFAULTS
from configs import tiny, tiny_cnn6
from tests._env import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_TRAIN, NUM_TEST = 48, 12
SGD = {"optimizer.name": "sgd", "optimizer.learning_rate": 1.0, "optimizer.weight_decay": 0.0}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from datasets import build

    path = str(tmp_path_factory.mktemp("tfds"))
    build.build("synthetic_faces", data_dir=path, num_train=NUM_TRAIN, num_test=NUM_TEST,
                image_size=64)
    return path


def tiny_config(data_dir, **overrides):
    """The tiny FAN (configs/tiny.py)."""
    config = tiny.get_config()
    config.data_dir = data_dir
    config.update_from_flattened_dict(overrides)
    return config


def loop_config(data_dir, **overrides):
    """The tiny CNN-6 regressor (configs/tiny_cnn6.py), for the tests of the loop."""
    config = tiny_cnn6.get_config()
    config.data_dir = data_dir
    config.update_from_flattened_dict(overrides)
    return config


def flat(tree):
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def fake_batch(config, rng, batch):
    """A global batch of random crops with plausible landmarks (a jittered mean face)."""
    s = config.input_size
    landmarks = rng.uniform(0.2 * s, 0.8 * s, size=(batch, 68, 2)).astype(np.float32)
    return {
        "image": rng.integers(0, 256, size=(batch, s, s, 3), dtype=np.uint8),
        "landmarks": landmarks,
        "visible": np.ones((batch, 68), bool),
    }


def run_step(config, batch, num_devices, state=None):
    """One pmap'ed train step from ``state`` (default: the initial one) with the global ``batch``
    split over ``num_devices``."""
    if state is None:
        state = trainer.create_train_state(config, jax.random.key(0), num_train_examples=1000)
    devices = jax.local_devices()[:num_devices]
    sharded = jax.tree.map(lambda x: x.reshape(num_devices, -1, *x.shape[1:]), batch)
    step = jax.pmap(
        lambda s, b: trainer.train_step(s, b, trainer.learning_rate_at(config, 1000, 0),
                                        config=config, scheme=trainer.get_scheme(config.scheme)),
        axis_name=trainer.AXIS, devices=devices)
    new_state, metrics = step(trainer.replicate(state, devices), sharded)
    return trainer.unreplicate(new_state), jax.device_get(metrics)


def test_replicate_and_unreplicate_copy_on_the_host_without_compiling():
    """trainer.replicate gives every device the same copy, sharded over the pmap axis as the
    step takes it; unreplicate returns one copy as host arrays; neither compiles a program."""
    compiles = []

    def listen(event, seconds, **kwargs):
        if event.endswith("backend_compile_duration"):
            compiles.append(kwargs)

    rng = np.random.default_rng(3)
    tree = {"kernel": rng.normal(size=(3, 3, 2, 5)).astype(np.float32),
            "step": np.int32(7), "stats": {"mean": jax.numpy.asarray(rng.normal(size=(5,)))}}
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        replicated = trainer.replicate(tree)
        back = trainer.unreplicate(replicated)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiles == []
    n = jax.local_device_count()
    assert n == 8
    for leaf, copy, host in zip(jax.tree.leaves(tree), jax.tree.leaves(replicated),
                                jax.tree.leaves(back), strict=True):
        assert copy.shape == (n, *np.shape(leaf)) and copy.dtype == np.asarray(leaf).dtype
        assert {s.device for s in copy.addressable_shards} == set(jax.local_devices())
        assert copy.sharding.spec == jax.sharding.PartitionSpec(trainer.AXIS)
        for shard in copy.addressable_shards:
            np.testing.assert_array_equal(np.asarray(shard.data)[0], leaf)
        assert isinstance(host, np.ndarray)
        np.testing.assert_array_equal(host, leaf)
    # What the step returns unreplicates too, to the step's own values.
    step = jax.pmap(lambda t: jax.tree.map(lambda x: x + 1, t), axis_name=trainer.AXIS)
    out = trainer.unreplicate(step(replicated))
    np.testing.assert_array_equal(out["kernel"], tree["kernel"] + 1)
    assert out["step"] == 8


def test_eight_devices_equal_one_device():
    """One step on 8 devices (1 example each) equals one step on 1 device (8 examples).

    The step runs with SGD at learning rate 1 (no weight decay), so the parameter change *is*
    the pmean'ed gradient (see trainer.create_optimizer for why not RMSProp).

    The model is the tiny CNN-6: BatchNorm after every convolution and after its dense layer,
    so the batch statistics of all four layers are pmean'ed across the 8 devices (each holds
    one example, whose own statistics are nothing like the batch's). The two batch splits'
    gradients agree to about 7e-7 (float32 summation order), well inside the bound.
    """
    assert jax.local_device_count() >= 8, "tests/conftest.py sets 8 fake CPU devices"
    config = loop_config("", **SGD)
    batch = fake_batch(config, np.random.default_rng(0), 8)
    state1, m1 = run_step(config, batch, 1)
    state8, m8 = run_step(config, batch, 8)
    np.testing.assert_allclose(m8["loss"][0], m1["loss"][0], rtol=1e-5)
    assert np.all(m8["loss"] == m8["loss"][0]), "loss is pmean'ed: the same on every device"
    np.testing.assert_allclose(flat(state8.batch_stats), flat(state1.batch_stats), atol=1e-5)
    init = flat(trainer.create_train_state(config, jax.random.key(0), 1000).params)
    grad1, grad8 = init - flat(state1.params), init - flat(state8.params)
    assert np.abs(grad1).max() > 1e-3, "the step moved the parameters"
    np.testing.assert_allclose(grad8, grad1, atol=1e-5)


def test_non_finite_step_is_reported():
    config = loop_config("", **{"optimizer.learning_rate": float("nan")})
    batch = fake_batch(config, np.random.default_rng(1), 8)
    state, metrics = run_step(config, batch, 2)
    assert metrics["finite"][0] == 1.0, "the first loss and gradient are still finite"
    assert np.isnan(flat(state.params)).any(), "a NaN learning rate poisons the update"
    _, metrics = run_step(config, batch, 2, state)  # the step after: NaN parameters
    assert np.all(metrics["finite"] == 0.0)


@pytest.mark.parametrize("name", ["fan", "cnn6"])
def test_initialiser_options_change_its_compile_time_only(name):
    """The initialiser compiled with trainer.INIT_COMPILER_OPTIONS gives XLA's default
    compilation's values bit for bit: the tiny FAN (convolutions, BatchNorm, CoordConv, boundary
    head) and the tiny CNN-6 of tests/test_regression.py (dense layers, a zero-initialised
    head), wider. Every model here uses flax's default initialisers (the ResNet too)."""
    from awing_jax.models import create_model
    from tests.test_regression import tiny_regression_config

    # The CNN-6 with 16 features, not 4: at XLA's default level LLVM unrolls the random draws of
    # its very small kernels (3x3x4x8) in full, a 7.4 s compile instead of 2.6 s.
    config = (tiny_config("") if name == "fan"
              else tiny_regression_config(name, **{"model.features": 16}))
    model = create_model(config)
    key = jax.random.key(11)
    fast = trainer.init_variables(model, config.input_size, key)
    # XLA's own defaults, spelled out: the suite's XLA_FLAGS (tests/conftest.py) change them.
    default = trainer.init_variables(model, config.input_size, key, compiler_options=XLA_DEFAULTS)
    assert trainer.INIT_COMPILER_OPTIONS.items() - XLA_DEFAULTS.items(), (
        "the options under test are not XLA's defaults")
    assert jax.tree.structure(fast) == jax.tree.structure(default)
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(default), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.std(flat(fast["params"])) > 0, "random, not constant, parameters were compared"


@pytest.mark.parametrize(("rate", "factor", "epochs", "examples"),
                         [(1e-4, 0.1, (80, 160), 48), (3e-4, 0.3, (1, 2, 5), 40),
                          (2.5e-3, 0.7, (), 7)])
def test_learning_rate_at_is_the_schedule_bit_for_bit(rate, factor, epochs, examples):
    """The host's learning rate for each update is the optax schedule's value in the compiled
    program, to the bit, before, at and after every decay boundary."""
    config = loop_config("", **{"optimizer.learning_rate": rate, "optimizer.decay_factor": factor,
                                "optimizer.decay_epochs": epochs})
    per_epoch = trainer.steps_per_epoch(config, examples)
    schedule = jax.jit(trainer.learning_rate_schedule(config, examples))
    boundaries = [e * per_epoch for e in epochs]
    steps = sorted({0, 1, *(b + d for b in boundaries for d in (-1, 0, 1)), 3 * per_epoch + 2})
    decayed = set()
    for step in steps:
        host = trainer.learning_rate_at(config, examples, step)
        graph = np.asarray(schedule(np.int32(step)))
        assert host.dtype == np.float32 and host.tobytes() == graph.tobytes(), (step, host, graph)
        decayed.add(sum(step >= b for b in boundaries))
    assert decayed == set(range(len(epochs) + 1)), "every stage of the schedule was compared"


def _lowered_step(config, num_train_examples):
    """The text of the pmap'ed training step lowered for one device (abstract arguments)."""
    from awing_jax.models import create_model

    model = create_model(config)
    size = config.input_size

    def state():
        variables = model.init(jax.random.key(0), jax.numpy.zeros((1, size, size, 3)),
                               train=False)
        return trainer.train_state(config, variables, num_train_examples)

    one = lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype)  # noqa: E731
    batch = fake_batch(config, np.random.default_rng(0), config.batch_size)
    rate = trainer.learning_rate_at(config, num_train_examples, 0)
    return trainer.make_p_train_step(config).lower(
        jax.tree.map(one, jax.eval_shape(state)), jax.tree.map(one, batch), rate).as_text()


def test_runs_that_differ_in_learning_rate_share_one_compiled_step():
    """The learning rate, its decay and the data set's size are arguments of the compiled step,
    not constants: such runs lower to one program, which the persistent cache compiles once.
    The optimiser is part of the program (the check can fail)."""
    plain = _lowered_step(loop_config(""), 48)
    assert _lowered_step(loop_config("", **{"optimizer.learning_rate": 0.25,
                                            "optimizer.decay_epochs": (1, 3)}), 1000) == plain
    assert _lowered_step(loop_config("", **{"optimizer.weight_decay": 0.5}), 48) != plain


def read_params(workdir, step="latest"):
    manager = ckpt.create_manager(workdir, read_only=True)
    return ckpt.restore_variables(manager, ckpt.resolve_step(manager, step))


def test_kill_and_resume_is_identical(data_dir, tmp_path):
    full = loop_config(data_dir, num_train_steps=4)
    trainer.train_and_evaluate(full, str(tmp_path / "full"))
    half = loop_config(data_dir, num_train_steps=2)
    trainer.train_and_evaluate(half, str(tmp_path / "resumed"))
    trainer.train_and_evaluate(full, str(tmp_path / "resumed"))  # resumes at step 2
    a, b = read_params(str(tmp_path / "full")), read_params(str(tmp_path / "resumed"))
    np.testing.assert_array_equal(flat(a), flat(b))
    steps = [json.loads(line)["step"] for line in open(tmp_path / "resumed" / "metrics.jsonl")]
    assert sorted(set(steps)) == [1, 2, 3, 4]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_cmd(data_dir, workdir, steps, *extra, config="tiny_cnn6"):
    return [sys.executable, os.path.join(ROOT, "train.py"),
            f"--config={os.path.join(ROOT, 'configs', config + '.py')}", f"--workdir={workdir}",
            f"--config.data_dir={data_dir}", f"--config.num_train_steps={steps}",
            f"--config.eval_every_steps={steps}", "--nobaseline", *extra]


SGD_RUN = ("--config.optimizer.name=sgd", "--config.optimizer.learning_rate=0.1")


def _env(devices):
    """The test environment for a train.py / evaluate.py process with ``devices`` CPU devices."""
    return dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(devices))


def test_two_processes_equal_one_process(data_dir, tmp_path):
    steps = 2
    single = subprocess.run(_train_cmd(data_dir, tmp_path / "single", steps, *SGD_RUN), cwd=ROOT,
                            env=_env(1), capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    port = _free_port()
    procs = [subprocess.Popen(
        _train_cmd(data_dir, tmp_path / "multi", steps, *SGD_RUN,
                   f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                   f"--process_id={i}"),
        cwd=ROOT, env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "2 processes" in outs[0][0]
    multi, single = read_params(str(tmp_path / "multi")), read_params(str(tmp_path / "single"))
    # Equal up to float32 summation order (per-process partial means vs one mean over 8).
    atol = 2e-4
    np.testing.assert_allclose(flat(multi), flat(single), rtol=1e-4, atol=atol)
    init = trainer.create_train_state(loop_config(data_dir), jax.random.key(0), NUM_TRAIN)
    moved = np.abs(flat(single["params"]) - flat(init.params))
    assert moved.max() > 100 * atol, "two steps moved the parameters far beyond the tolerance"


def test_training_lowers_loss_and_evaluate_writes_report(data_dir, tmp_path):
    workdir = tmp_path / "run"
    # Eight devices and tiny's own learning rate: the training step of the tests that train the
    # tiny FAN in process (the XLA cache shares it). One checkpoint, at the end.
    cmd = _train_cmd(data_dir, workdir, 12, "--config.log_every_steps=2",
                     "--config.checkpoint_every_steps=12", config="tiny")
    run = subprocess.run(cmd, cwd=ROOT, env=_env(8), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    train = [r for r in records if "loss" in r]
    losses = [r["loss"] for r in train]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0], losses
    # TensorBoard has what metrics.jsonl has: every logged training value and the evaluation.
    scalars = tensorboard_scalars(workdir / "tensorboard")
    for r in train:
        for key in ("loss", "train_nme", "grad_norm", "learning_rate"):
            assert scalars[f"train/{key}"][r["step"]] == pytest.approx(r[key], rel=1e-6)
    assert sorted(scalars["train/loss"]) == [r["step"] for r in train]
    last = records[-1]
    assert scalars["eval/nme"] == {last["step"]: pytest.approx(last["nme"], rel=1e-6)}
    ev = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"),
                         f"--workdir={workdir}", "--checkpoint=latest", "--flip_test"],
                        cwd=ROOT, env=_env(8), capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    report = json.load(open(workdir / "eval" / "synthetic_faces-test.json"))
    split = report["splits"]["test"]
    assert split["num_images"] == NUM_TEST and len(split["per_image"]) == NUM_TEST
    assert report["flip_test"] is True and report["norm"] == "inter_ocular"
    flipped, plain = flip_test_nmes(str(workdir), data_dir)
    reported = {r["index"]: r["nme"] for r in split["per_image"]}
    assert sorted(reported) == sorted(flipped)
    for index, nme in flipped.items():
        assert reported[index] == pytest.approx(nme, rel=1e-4, abs=1e-6), index
    assert split["nme"] == pytest.approx(np.mean(list(flipped.values())), rel=1e-5)
    # The flip test changed the predictions: without it the errors differ.
    assert max(abs(flipped[i] - plain[i]) for i in flipped) > 1e-3
    assert 0 <= split["failure_rate"] <= 1 and 0 <= split["auc"] <= 1
    assert os.path.getsize(workdir / "eval" / "synthetic_faces-test-ced.png") > 1000


def tensorboard_scalars(directory) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the scalars in the TensorBoard event files under ``directory``,
    read here: TFRecord framing (a little-endian uint64 length, its 4-byte CRC, the record, its
    4-byte CRC) around tensorboardX's Event protocol buffers."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars: dict[str, dict[int, float]] = {}
    files = sorted(directory.glob("events.out.tfevents.*"))
    assert files, f"no event file in {directory}"
    for path in files:
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def test_summary_writer_leaves_pytorch_unimported(tmp_path):
    """tensorboardX imports PyTorch when it is installed; the run's writer does not, and
    ``import torch`` is not blocked afterwards."""
    script = ("import sys; from awing_jax import trainer; "
              "w = trainer._summary_writer(sys.argv[1]); w.add_scalar('train/loss', 0.5, 7); "
              "w.close(); print(repr(sys.modules.get('torch', 'absent')))")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, env=_env(1),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "'absent'"  # not None: a None entry would block `import torch`
    assert tensorboard_scalars(tmp_path / "tensorboard") == {"train/loss": {7: 0.5}}


def flip_test_nmes(workdir, data_dir):
    """Per-image NME {index: nme} of the latest checkpoint with and without the flip test,
    computed here: the model on each evaluation crop and on its mirror image, the mirror's
    heatmaps mapped back by reversing columns and re-labelling channels with 300W's published
    pairs (tests/_landmark_facts.py), averaged, decoded; the visible points' mean error over the
    distance of the outer eye corners 36 and 45."""
    from awing_jax import input_pipeline
    from awing_jax.decode import decode_heatmaps
    from awing_jax.models import create_model
    from tests._landmark_facts import W300_PAIRS, pairs_to_permutation

    manager = ckpt.create_manager(workdir, read_only=True)
    step = ckpt.resolve_step(manager, "latest")
    config, variables = ckpt.restore_config(manager, step), ckpt.restore_variables(manager, step)
    config.data_dir = data_dir
    model = create_model(config)
    apply = jax.jit(lambda x: model.apply(variables, x, train=False)[-1])
    channels = [*pairs_to_permutation(68, W300_PAIRS), 68]  # the boundary channel stays
    source = input_pipeline.data_source(config.dataset, "test", data_dir)
    flipped, plain = {}, {}
    for batch in input_pipeline.eval_batches(source, config, batch_size=8):
        x = np.asarray(batch["image"], np.float32) / 255.0
        heatmaps = np.asarray(apply(x))
        mirrored = np.asarray(apply(x[:, :, ::-1]))[:, :, ::-1][..., channels]
        for results, maps in ((plain, heatmaps), (flipped, (heatmaps + mirrored) / 2)):
            pred = np.asarray(decode_heatmaps(maps[..., :68], mode=config.decoder), np.float64)
            truth = np.asarray(batch["landmarks"], np.float64)
            visible = np.asarray(batch["visible"], np.float64)
            errors = (np.linalg.norm(pred - truth, axis=-1) * visible).sum(-1) / visible.sum(-1)
            nme = errors / np.linalg.norm(truth[:, 36] - truth[:, 45], axis=-1)
            for index, value, valid in zip(batch["index"], nme, batch["valid"], strict=True):
                if valid:
                    results[int(index)] = float(value)
    return flipped, plain


def test_nan_stops_training_and_keeps_last_checkpoint(data_dir, tmp_path):
    workdir = tmp_path / "nan"
    # The first run is test_two_processes_equal_one_process's one-process run (SGD, 2 steps):
    # the same programs, compiled once for both tests (the suite's compilation cache).
    ok = subprocess.run(_train_cmd(data_dir, workdir, 2, *SGD_RUN), cwd=ROOT, env=_env(1),
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-3000:]
    before = flat(read_params(str(workdir)))
    bad = subprocess.run(_train_cmd(data_dir, workdir, 4, "--config.optimizer.name=sgd",
                                    "--config.optimizer.learning_rate=nan"),
                         cwd=ROOT, env=_env(1), capture_output=True, text=True, timeout=600)
    assert bad.returncode == 3
    assert "NaN/Inf" in bad.stderr and "step 2" in bad.stderr
    manager = ckpt.create_manager(str(workdir), read_only=True)
    assert manager.latest_step() == 2
    np.testing.assert_array_equal(flat(read_params(str(workdir))), before)
