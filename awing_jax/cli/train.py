"""Trains a face-alignment model; with no flags, the demo on the embedded synthetic_faces set.

    python train.py                                    # the demo: configs/demo.py
    python train.py --config configs/wflw.py --workdir runs/wflw --config.loss.kind=l2
    awing-train --config wflw ...                      # installed: a config by name
    # several processes (pods, or hosts of GPUs): the same command on every host with
    python train.py --config configs/wflw.py --workdir gs://... --distributed
    # or explicitly, e.g. two processes on one machine:
    python train.py ... --coordinator_address=127.0.0.1:1234 --num_processes=2 --process_id=0

A rerun with the same workdir resumes from its latest checkpoint (params, optimiser, step, data
iterator), so an interrupted run continues exactly as an uninterrupted one.

Fine-tuning: ``--config.init_from=DIR`` starts from the weights of DIR's checkpoint (converted or
trained) and keeps its crop protocol unless ``--config.crop_protocol`` says otherwise;
``--config.init_landmark_map=wflw_to_300w`` maps a 98-point model onto 300W's 68 points
(awing_jax/finetune.py, docs/landmark_maps.md).

"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from awing_jax import config_files, dataset_builders, errors


def _define_config_flag() -> Exception | None:
    """Defines ``--config``. Without ``--config`` on the command line, ml_collections parses the
    default file now, applying the ``--config.*`` overrides of sys.argv: a mistyped field fails
    here, before any flag is parsed; it is returned (and reported by :func:`run`) instead."""
    default = config_files.path("demo")
    text = ("Training config: a file, or the name of one of awing-jax's (demo, wflw, w300, "
            "cofw, aflw19, tiny, ...).")
    try:
        config_flags.DEFINE_config_file("config", default, text, lock_config=True)
        return None
    except (KeyError, AttributeError) as e:
        config_flags.DEFINE_config_file("config", default, text, lock_config=True,
                                        sys_argv=sys.argv[:1])
        return e


_CONFIG_ERROR = _define_config_flag()
flags.DEFINE_string("workdir", None, "Checkpoints, metrics.jsonl and TensorBoard logs go here "
                    "(default: runs/<config name>).")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with the cluster's "
                  "auto-detected settings (TPU pods, SLURM, Open MPI).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for a manual "
                    "multi-process launch.")
flags.DEFINE_integer("num_processes", None, "Number of processes of a manual launch.")
flags.DEFINE_integer("process_id", None, "This process's id in a manual launch.")
flags.DEFINE_bool("baseline", None, "Also score the mean-shape baseline on the validation split "
                  "(default: on for synthetic_faces).")
FLAGS = flags.FLAGS


def default_workdir(config_path: str) -> str:
    name = os.path.splitext(os.path.basename(config_path.split(":")[0]))[0]
    return os.path.join("runs", name)


def init_distributed() -> None:
    import jax

    if FLAGS.coordinator_address:
        # CPU processes need a collectives backend (accelerators bring their own; this setting
        # only affects the CPU client). It must be set before the backend starts.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                                   FLAGS.process_id)
    elif FLAGS.distributed:
        jax.distributed.initialize()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from awing_jax.runtime import retain_freed_memory, use_compilation_cache

    retain_freed_memory()  # reuse freed host memory across steps (see awing_jax/runtime.py)
    use_compilation_cache()  # compiled programs kept on disk for the next run
    config = FLAGS.config
    workdir = FLAGS.workdir or default_workdir(flags.FLAGS["config"].config_filename)
    init_distributed()

    import jax

    from awing_jax import evaluation, finetune, input_pipeline, trainer

    if config.dataset == "synthetic_faces":
        dataset_builders.build_module().build("synthetic_faces", data_dir=config.data_dir or None)
    from awing_jax import custom_schemes

    try:  # a scheme from the data: explicit from here on (announces flips/boundary switched off)
        config = custom_schemes.resolve_config(config, announce=(
            print if jax.process_index() == 0 else None))
    except (FileNotFoundError, ValueError) as e:
        raise errors.UserError(str(e)) from None
    # Fine-tuning, once the scheme is known. A crop protocol set on the command line or in the
    # config file (anything but the default) wins over the one of the checkpoint init_from names.
    protocol_given = (config.crop_protocol != "face_square" or any(
        a.split("=")[0] == "--config.crop_protocol" for a in sys.argv[1:]))
    config = finetune.resolve_config(config, protocol_given=protocol_given, announce=(
        print if jax.process_index() == 0 else None))
    if jax.process_index() == 0:
        print(f"training {config.model.name} on {config.dataset}/{config.train_split} "
              f"({jax.device_count()} devices, {jax.process_count()} processes) in "
              f"{os.path.abspath(workdir)}", flush=True)
    try:
        result = trainer.train_and_evaluate(config, workdir)
    except trainer.TrainingDivergedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if jax.process_index() != 0:
        return 0
    t = config.failure_threshold
    print(f"{config.dataset}/{config.eval_split}: NME {result['nme']:.4f} "
          f"({config.norm}), FR@{t} {result['failure_rate']:.4f}, AUC@{t} {result['auc']:.4f}")
    baseline = FLAGS.baseline if FLAGS.baseline is not None else config.dataset == "synthetic_faces"
    if baseline:
        train_source = input_pipeline.data_source(config.dataset, config.train_split,
                                                  config.data_dir)
        eval_source = input_pipeline.data_source(config.dataset, config.eval_split,
                                                 config.data_dir)
        base = evaluation.mean_shape_baseline(train_source, eval_source, config)
        print(f"mean-shape baseline: NME {base['nme']:.4f}; the model's NME is "
              f"{result['nme'] / base['nme']:.2f}x the baseline's")
    print(f"evaluate it: python evaluate.py --workdir {workdir}")
    return 0


def run(argv=None) -> None:
    """Console entry point (``awing-train``, ``train.py``): ``--config`` may name a shipped config;
    exits with main's status (2 and one ``error:`` line for a user's mistake)."""
    try:
        argv = config_files.resolve_argv(sys.argv if argv is None else argv)
    except errors.UserError as e:
        sys.exit(errors.report(e))
    if _CONFIG_ERROR is not None:
        sys.exit(errors.report(errors.config_override_message(argv, _CONFIG_ERROR)))
    sys.argv = argv  # ml_collections reads the --config.* overrides from sys.argv
    errors.run(main, argv, progress_bars=False)


if __name__ == "__main__":
    run()
