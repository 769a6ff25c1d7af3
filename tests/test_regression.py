"""Coordinate regression (Wing paper): CNN-6, ResNet-50, coordinate losses via the trainer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from awing_jax import checkpoint, inference, losses, trainer
from awing_jax.models import create_model, predicts_coordinates
from awing_jax.models.common import count_params
from awing_jax.models.regression import normalised_to_pixels
from configs import tiny_cnn6, wing_cnn6, wing_resnet50

NUM_POINTS = 68  # the 300W scheme of the tiny config


def tiny_regression_config(name="cnn6", **overrides):
    config = tiny_cnn6.get_config()
    if name != "cnn6":
        config.model = wing_resnet50.get_config().model
        config.model.update(features=4, stage_sizes=(1, 1), conv_lowering="xla")
    config.update_from_flattened_dict(overrides)
    return config


def abstract_outputs(config, batch=2):
    # Every lowering has the same parameters and outputs (tests/test_runtime.py); XLA's own
    # convolutions trace in a fraction of the CPU Winograd lowering's time.
    model = create_model(config, conv_lowering="xla")
    x = jnp.zeros((batch, config.input_size, config.input_size, 3))
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    return variables, out


def test_paper_models_have_the_expected_layouts():
    """Parameter counts against independent arithmetic.

    CNN-6: convs 3*32*9 + 32*64*9 + 64*128*9 + 128*256*9 + 256*512*9, BN scale/bias on 992
    channels, dense 2048x1024 (no bias; BN follows) + BN on 1024, dense 1024x136 + 136.
    ResNet-50: torchvision's 25,557,032 minus its 2048x1000+1000 classifier, plus 2048x136+136.
    """
    convs = 9 * (3 * 32 + 32 * 64 + 64 * 128 + 128 * 256 + 256 * 512)
    cnn6 = convs + 2 * 992 + 2048 * 1024 + 2 * 1024 + 1024 * 136 + 136
    resnet50 = 25_557_032 - (2048 * 1000 + 1000) + 2048 * 136 + 136
    for module, expected in ((wing_cnn6, cnn6), (wing_resnet50, resnet50)):
        config = module.get_config()
        assert predicts_coordinates(config)
        variables, out = abstract_outputs(config)
        assert count_params(variables["params"]) == expected
        assert out.shape == (2, NUM_POINTS, 2) and out.dtype == jnp.float32


def test_config_argument_selects_the_dataset_protocol():
    config = wing_cnn6.get_config("wflw")
    assert (config.dataset, config.scheme, config.eval_split) == ("wflw", "wflw", "test")
    assert (config.input_size, config.model.name) == (64, "cnn6")
    config = wing_resnet50.get_config("aflw19")
    assert (config.scheme, config.norm, config.model.name) == ("aflw19", "box", "resnet50")
    with pytest.raises(ValueError, match="unknown dataset"):
        wing_cnn6.get_config("imagenet")


def test_normalised_coordinates_span_the_image_edges():
    size = 64
    u = jnp.array([-1.0, 0.0, 1.0])
    np.testing.assert_allclose(normalised_to_pixels(u, size), [-0.5, (size - 1) / 2, size - 0.5])


@pytest.mark.parametrize("name", ["cnn6", "resnet50"])
def test_untrained_regressor_predicts_the_image_centre(name):
    """The coordinate layer starts at zero: every point at the centre, whatever the image."""
    config = tiny_regression_config(name)
    model = create_model(config)
    x = jax.random.uniform(jax.random.key(1), (3, config.input_size, config.input_size, 3))
    variables = trainer.init_variables(model, config.input_size, jax.random.key(0))
    out = model.apply(variables, x, train=False)
    assert out.shape == (3, NUM_POINTS, 2)
    np.testing.assert_allclose(out, (config.input_size - 1) / 2, atol=1e-5)


def stub_apply(prediction):
    """An ``apply_fn`` returning fixed landmarks, to test the objective without a network."""
    def apply_fn(variables, images, *, train, mutable):
        del variables, images, train, mutable
        return prediction, {"batch_stats": {}}
    return apply_fn


def objective(config, pred, target, visible):
    batch = {"image": np.zeros((len(pred), config.input_size, config.input_size, 3), np.uint8),
             "landmarks": target, "visible": visible}
    loss, (outputs, _) = trainer.compute_loss(
        {}, {}, batch, apply_fn=stub_apply(jnp.asarray(pred)), config=config,
        scheme=trainer.get_scheme(config.scheme))
    np.testing.assert_array_equal(
        inference.landmarks_from_outputs(create_model(config), outputs, decoder=config.decoder),
        pred)
    return float(loss)


def hand_example(size):
    """Two images of 68 points, all at a fixed location but for a few chosen errors (pixels)."""
    target = np.full((2, NUM_POINTS, 2), size / 2, np.float32)
    pred = target.copy()
    pred[0, 0] += (3.0, -12.0)   # |x| < w and |x| > w at a 64 input
    pred[1, 5, 1] += 0.5
    pred[1, 7, 0] -= 40.0        # not visible below
    visible = np.ones((2, NUM_POINTS), bool)
    visible[1, 7] = False
    return pred, target, visible


def wing_by_hand(x, w=10.0, epsilon=2.0):
    x = abs(x)
    return w * np.log(1 + x / epsilon) if x < w else x - (w - w * np.log(1 + w / epsilon))


@pytest.mark.parametrize("size", [64, 128])
def test_wing_through_the_trainer_is_the_papers_formula(size):
    """Mean of Wing over the visible x and y elements, errors in pixels of a 64 px input."""
    config = tiny_regression_config(input_size=size, **{"loss.kind": "wing"})
    pred, target, visible = hand_example(size)
    unit = 64 / size
    errors = [3.0 * unit, 12.0 * unit, 0.5 * unit]  # every other visible element is exact
    expected = sum(wing_by_hand(e) for e in errors) / (2 * (2 * NUM_POINTS - 1))
    assert objective(config, pred, target, visible) == pytest.approx(expected, rel=1e-5)


def test_each_coordinate_loss_is_selectable():
    config = tiny_regression_config(input_size=64)
    pred, target, visible = hand_example(64)
    elements = 2 * (2 * NUM_POINTS - 1)
    expected = {
        "l2": (9 + 144 + 0.25) / elements,
        "l1": (3 + 12 + 0.5) / elements,
        "smooth_l1": (2.5 + 11.5 + 0.125) / elements,   # beta = 1
        "wing": sum(wing_by_hand(e) for e in (3, 12, 0.5)) / elements,
    }
    for kind, value in expected.items():
        config.loss.kind = kind
        assert objective(config, pred, target, visible) == pytest.approx(value, rel=1e-5), kind
    config.loss.kind = "awing"
    with pytest.raises(ValueError, match="unknown coordinate loss"):
        objective(config, pred, target, visible)


def test_coordinate_loss_of_a_fully_masked_batch_is_zero():
    pred = jnp.ones((2, 3, 2))
    loss = losses.coordinate_loss(pred, 0 * pred, kind="l1", mask=jnp.zeros((2, 3)))
    assert float(loss) == 0.0
    grad = jax.grad(lambda p: losses.coordinate_loss(p, 0 * p, mask=jnp.zeros((2, 3))))(pred)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("name", ["cnn6", "resnet50"])
def test_training_steps_lower_the_loss(name):
    """A few pmap'ed train steps on one fixed batch of images with image-dependent landmarks."""
    config = tiny_regression_config(name, **{"optimizer.learning_rate": 3e-3})
    rng = np.random.default_rng(0)
    s = config.input_size
    images = rng.integers(0, 256, size=(8, s, s, 3), dtype=np.uint8)
    brightness = images.mean(axis=(1, 2, 3)) / 255.0
    landmarks = (0.25 * s + 0.5 * s * rng.random((NUM_POINTS, 2)))[None] \
        + (8.0 * (brightness - 0.5))[:, None, None]
    batch = {"image": images[None], "landmarks": landmarks[None].astype(np.float32),
             "visible": np.ones((1, 8, NUM_POINTS), bool)}
    devices = jax.local_devices()[:1]
    state = trainer.replicate(trainer.create_train_state(config, jax.random.key(0), 1000),
                              devices)
    rate = trainer.learning_rate_at(config, 1000, 0)
    step = jax.pmap(lambda st, b: trainer.train_step(st, b, rate, config=config,
                                                     scheme=trainer.get_scheme(config.scheme)),
                    axis_name=trainer.AXIS, devices=devices)
    history = []
    for _ in range(25):
        state, metrics = step(state, batch)
        history.append(float(metrics["loss"][0]))
    assert np.all(np.isfinite(history))
    assert history[-1] < 0.3 * history[0], history


# The end-to-end run trains both families, each run with its own loss: every regression run (a
# tiny CNN-6 compiles in seconds) and the heatmap family's AWing + weight map. The three other
# heatmap runs differ from it only in their config (test_compare_losses_configs, below), and the
# value and gradient of each of their losses through the training step's objective are tested in
# tests/test_visibility.py; a tiny FAN's training step takes about 11 s to compile, so they are
# left out here.
END_TO_END_RUNS = ("heatmap-awing+weight_map", "regression-l2", "regression-l1",
                   "regression-smooth_l1", "regression-wing", "regression-wing+pdb")


def test_compare_losses_end_to_end(tmp_path):
    """Runs of both families for two steps with tiny models: the table, the JSON and the
    curves' plot are written, and each run trained its own model with its own loss."""
    import json

    import matplotlib.image

    from datasets import build
    from experiments import compare_losses

    data_dir = str(tmp_path / "tfds")
    build.build("synthetic_faces", data_dir=data_dir, num_train=48, num_test=12, image_size=64)
    out = tmp_path / "out"
    results = compare_losses.main(["--data_dir", data_dir, "--size", "tiny", "--steps", "2",
                                   "--runs", ",".join(END_TO_END_RUNS), "--out", str(out)])
    expected = [(r.family, r.name) for r in compare_losses.RUNS
                if compare_losses.slug(r) in END_TO_END_RUNS]
    assert len(expected) == len(END_TO_END_RUNS)
    assert [(r["family"], r["run"]) for r in results] == expected
    table = (out / "results.md").read_text().splitlines()
    assert "Mean-shape baseline" in table[0]
    rows = [line for line in table if line.startswith("| heatmap") or
            line.startswith("| regression")]
    assert len(rows) == len(expected)
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(END_TO_END_RUNS)
    for r in results:
        assert np.isfinite(r["nme"]) and 0 <= r["failure_rate"] <= 1 and r["steps"] == 2
        # The run's config lives in its checkpoints only (written once).
        workdir = out / "runs" / compare_losses.slug(compare_losses.Run(r["family"], r["run"], {}))
        assert not (workdir / "config.json").exists()
        manager = checkpoint.create_manager(str(workdir), read_only=True)
        config = checkpoint.restore_config(manager, manager.latest_step()).to_dict()
        assert config["model"]["name"] == ("fan" if r["family"] == "heatmap" else "cnn6")
        assert config["loss"]["kind"] == r["loss"]
        assert config["pdb"] == (r["run"] == "Wing + PDB")
        assert config["loss"]["use_weight_map"] == (r["run"] == "AWing + weight map") or \
            r["family"] == "regression"
    assert {r["run"]: r["loss"] for r in results if r["family"] == "regression"} == {
        "L2": "l2", "L1": "l1", "smooth L1": "smooth_l1", "Wing": "wing", "Wing + PDB": "wing"}
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["runs"]) == len(expected)
    image = matplotlib.image.imread(out / "nme_curves.png")
    assert image.shape[1] > image.shape[0] and np.ptp(image[..., :3]) > 0.5


@pytest.mark.parametrize("size", ["tiny", "small", "paper"])
def test_compare_losses_configs(size):
    """Every run's config, as the driver builds it: the family's model, the run's loss, the
    weight map only for AWing + weight map, PDB only for Wing + PDB, and otherwise the same
    config within a family (the same model, data, schedule and seed)."""
    from experiments import compare_losses

    args = compare_losses.parse_args(["--size", size, "--steps", "2", "--data_dir", "d"])
    assert [compare_losses.slug(r) for r in compare_losses.selected_runs(args)] == [
        "heatmap-l2", "heatmap-l1", "heatmap-awing", "heatmap-awing+weight_map",
        "regression-l2", "regression-l1", "regression-smooth_l1", "regression-wing",
        "regression-wing+pdb"]
    configs = {compare_losses.slug(r): compare_losses.run_config(r, args).to_dict()
               for r in compare_losses.RUNS}
    kinds = {"heatmap-l2": "l2", "heatmap-l1": "l1", "heatmap-awing": "awing",
             "heatmap-awing+weight_map": "awing", "regression-l2": "l2", "regression-l1": "l1",
             "regression-smooth_l1": "smooth_l1", "regression-wing": "wing",
             "regression-wing+pdb": "wing"}
    for name, config in configs.items():
        family = name.split("-")[0]
        assert config["model"]["name"] == ("fan" if family == "heatmap" else "cnn6"), name
        assert config["loss"]["kind"] == kinds[name], name
        assert config["pdb"] == (name == "regression-wing+pdb"), name
        if family == "heatmap":
            assert config["loss"]["use_weight_map"] == (name == "heatmap-awing+weight_map")
        assert config["num_train_steps"] == 2 and config["data_dir"] == "d"

    def rest(config):  # what must not differ between the runs of a family
        return {k: v for k, v in config.items() if k not in ("loss", "pdb")}

    for family, reference in (("heatmap", "heatmap-awing+weight_map"),
                              ("regression", "regression-wing")):
        for name, config in configs.items():
            if name.startswith(family):
                assert rest(config) == rest(configs[reference]), name
    if size == "tiny":
        assert configs["heatmap-l2"]["model"]["num_stacks"] == 1
        assert configs["regression-l2"]["model"]["features"] == 4


def test_compare_losses_names_unknown_runs(capsys):
    from experiments import compare_losses

    with pytest.raises(SystemExit) as exit_info:
        compare_losses.parse_args(["--runs", "heatmap-awing,heatmap-wing"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: unknown runs ['heatmap-wing']; known: heatmap-l2," in err
    with pytest.raises(SystemExit):
        compare_losses.parse_args(["--runs", "heatmap-l2", "--families", "regression"])
    assert "error: none of the runs ['heatmap-l2'] is in the families ['regression']" in \
        capsys.readouterr().err
