"""Evaluates a checkpoint: NME, failure rate and AUC, a JSON report and a CED plot.

    python evaluate.py --workdir runs/demo
    python evaluate.py --workdir runs/wflw --checkpoint best --split test --flip_test
    python evaluate.py --workdir runs/w300 --split challenge --norm eye_centers --box gt

The model and dataset come from the config stored in the checkpoint; flags override the split,
decoder, normaliser, box protocol and crop protocol. For WFLW's test split the six subsets are
reported too.
"""

import json
import os

from absl import app, flags

from awing_jax import errors

flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.", required=True)
flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
flags.DEFINE_string("dataset", None, "Dataset (default: the training config's).")
flags.DEFINE_string("split", None, "Split (default: the config's eval_split).")
flags.DEFINE_string("data_dir", None, "TFDS data dir (default: the config's).")
flags.DEFINE_enum("decoder", None, ["reference", "subpixel"], "Heatmap decoder.")
flags.DEFINE_string("norm", None, "NME normaliser: inter_ocular, inter_pupil, eye_centers, box.")
flags.DEFINE_enum("box", None, ["dataset", "gt"], "Crop from the dataset's face box or from the "
                  "landmarks' extent (the 'GT box' protocol).")
flags.DEFINE_enum("crop_protocol", None, ["face_square", "awing_wflw"], "Crop protocol "
                  "(default: the checkpoint's; face_square for checkpoints without one).")
flags.DEFINE_bool("flip_test", False, "Average the heatmaps of the image and its mirror image.")
flags.DEFINE_float("threshold", None, "FR/AUC threshold (default: the config's).")
flags.DEFINE_integer("batch_size", None, "Evaluation batch size.")
flags.DEFINE_enum("conv_lowering", None, ["xla", "matmul", "winograd", "auto"],
                  "How the model's convolutions run (docs/convolution_lowering.md); default: the "
                  "checkpoint config's model.conv_lowering (auto when it has none).")
FLAGS = flags.FLAGS

WFLW_SUBSETS = ("largepose", "expression", "illumination", "makeup", "occlusion", "blur")


def plot_ced(curves: dict, threshold: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from awing_jax import metrics

    fig, ax = plt.subplots(figsize=(5, 4))
    for label, nmes in curves.items():
        t, frac = metrics.ced_curve(nmes, threshold)
        ax.plot(t, frac, label=label)
    ax.set_xlabel("NME")
    ax.set_ylabel("fraction of images")
    ax.set_xlim(0, threshold)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from awing_jax.runtime import retain_freed_memory, use_compilation_cache

    retain_freed_memory()  # reuse freed host memory across steps (see awing_jax/runtime.py)
    use_compilation_cache()  # compiled programs kept on disk for the next run
    from awing_jax import checkpoint as ckpt
    from awing_jax import evaluation, input_pipeline

    if "://" not in FLAGS.workdir and not os.path.isdir(ckpt.checkpoint_dir(FLAGS.workdir)):
        raise errors.UserError(f"--workdir {FLAGS.workdir}: no checkpoints/ folder in it (train "
                               "into it with train.py, or convert weights with awing-convert)")
    manager = ckpt.create_manager(FLAGS.workdir, read_only=True)
    try:
        step = ckpt.resolve_step(manager, FLAGS.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise errors.UserError(str(e)) from None
    config = ckpt.restore_config(manager, step)
    variables = ckpt.restore_variables(manager, step)
    if FLAGS.dataset:
        config.dataset = FLAGS.dataset
    if FLAGS.data_dir:
        config.data_dir = FLAGS.data_dir
    if FLAGS.crop_protocol:
        config.crop_protocol = FLAGS.crop_protocol
    if FLAGS.threshold is not None:
        config.failure_threshold = FLAGS.threshold
    split = FLAGS.split or config.eval_split
    norm = FLAGS.norm or config.norm
    box = FLAGS.box or config.eval_box
    decoder = FLAGS.decoder or config.decoder
    from awing_jax.landmarks import get_scheme, require_flip_permutation

    try:  # the checkpoint's scheme (possibly from the data) must know the normaliser and flips
        scheme = get_scheme(config.scheme)
        if norm not in scheme.norm_names:
            raise ValueError(f"--norm {norm!r} is not a normaliser of the {scheme.name} scheme; "
                             f"known: {', '.join(scheme.norm_names)}")
        if FLAGS.flip_test:
            require_flip_permutation(scheme)
    except ValueError as e:
        raise errors.UserError(str(e)) from None
    splits = [split]
    if config.dataset == "wflw" and split == "test":
        splits += [f"test_{s}" for s in WFLW_SUBSETS]
    sources = {split: input_pipeline.data_source(config.dataset, split, config.data_dir)}

    t = config.failure_threshold
    print(f"checkpoint step {step} of {os.path.abspath(FLAGS.workdir)}; {config.dataset}, "
          f"norm {norm}, box {box}, crop {config.crop_protocol}, decoder {decoder}, "
          f"flip test {FLAGS.flip_test}")
    print(f"{'split':<20} {'images':>7} {'NME %':>8} {f'FR@{t} %':>9} {f'AUC@{t}':>9}")
    report = {"checkpoint_step": step, "dataset": config.dataset, "norm": norm, "box": box,
              "crop_protocol": config.crop_protocol,
              "decoder": decoder, "flip_test": FLAGS.flip_test, "threshold": t, "splits": {}}
    curves = {}
    for name in splits:
        try:
            source = sources[name] if name in sources else input_pipeline.data_source(
                config.dataset, name, config.data_dir)
        except errors.UnknownSplitError:
            # A subset with no face is left out of the build (see its build_report.json).
            print(f"{name:<20} not in the built dataset (no examples); skipped")
            continue
        result = evaluation.evaluate_source(
            variables, source, config, box=box, decoder=decoder, norm=norm,
            flip_test=FLAGS.flip_test, batch_size=FLAGS.batch_size,
            conv_lowering=FLAGS.conv_lowering)
        print(f"{name:<20} {result['num_images']:>7} {100 * result['nme']:>8.3f} "
              f"{100 * result['failure_rate']:>9.2f} {result['auc']:>9.4f}")
        report["splits"][name] = {
            **{k: result[k] for k in ("nme", "failure_rate", "auc", "num_images")},
            "per_image": [{"index": int(i), "nme": float(e)}
                          for i, e in zip(result["indices"], result["nmes"], strict=True)],
        }
        curves[name] = result["nmes"]
    out_dir = os.path.join(FLAGS.workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"{config.dataset}-{split}")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    plot_ced(curves, t, stem + "-ced.png")
    print(f"wrote {stem}.json and {stem}-ced.png")
    return 0


def run(argv=None) -> None:
    """Console entry point (``awing-evaluate``, ``evaluate.py``): exits with main's status (2 and
    one ``error:`` line for a user's mistake)."""
    errors.run(main, argv, progress_bars=False)


if __name__ == "__main__":
    run()
