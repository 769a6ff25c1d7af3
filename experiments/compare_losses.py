"""Loss ablations of both papers: one model, one data set, one seed, trained with each loss.

    python -m experiments.compare_losses                     # synthetic_faces, small models, CPU
    python -m experiments.compare_losses --dataset wflw --size paper --steps 60000 \
        --out runs/ablation
    python -m experiments.compare_losses --families regression    # one family only
    python -m experiments.compare_losses --runs heatmap-awing,regression-wing+pdb  # some runs

Families (each run is ``awing_jax.trainer.train_and_evaluate`` with config overrides, in its own
workdir ``OUT/runs/<family>-<run>``):

- heatmap (AWing paper's ablation): a FAN trained with L2 (MSE), L1, Adaptive Wing, and Adaptive
  Wing with the Weighted Loss Map; the dataset's AWing config (configs/<dataset>.py).
- regression (Wing paper's ablation): CNN-6 trained with L2, L1, smooth L1, Wing, and Wing with
  pose-based data balancing; configs/wing_cnn6.py.

Sizes: ``small`` (the default for synthetic_faces; sized for about 12 minutes on 2 CPU cores)
trains a 1-stack FAN with 32 features on a 64 px input and a CNN-6 of half the paper's widths
(16..256 channels, dense 256), batch 8, at a constant learning rate so that PDB, which lengthens
an epoch, does not move a step decay; ``paper`` (the default elsewhere) keeps the configs as
they are (4-stack FAN, the paper's CNN-6), their learning-rate schedules in epochs included;
``tiny`` is for tests. Without ``--steps``, ``small`` trains 500 steps per run and ``paper`` the
configs' full schedules.

Writes ``OUT/results.md`` (NME, FR, AUC on the validation split and wall time per run),
``OUT/results.json`` and ``OUT/nme_curves.png`` (validation NME against the step, from each
run's metrics.jsonl).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time

import jax
from matplotlib.figure import Figure

from configs import wing_cnn6

FAMILIES = ("heatmap", "regression")
SMALL_STEPS = 500
EVALUATIONS = 5  # validation points per curve


@dataclasses.dataclass(frozen=True)
class Run:
    family: str
    name: str
    overrides: dict


RUNS = (
    Run("heatmap", "L2", {"loss.kind": "l2", "loss.use_weight_map": False}),
    Run("heatmap", "L1", {"loss.kind": "l1", "loss.use_weight_map": False}),
    Run("heatmap", "AWing", {"loss.kind": "awing", "loss.use_weight_map": False}),
    Run("heatmap", "AWing + weight map", {"loss.kind": "awing", "loss.use_weight_map": True}),
    Run("regression", "L2", {"loss.kind": "l2", "pdb": False}),
    Run("regression", "L1", {"loss.kind": "l1", "pdb": False}),
    Run("regression", "smooth L1", {"loss.kind": "smooth_l1", "pdb": False}),
    Run("regression", "Wing", {"loss.kind": "wing", "pdb": False}),
    Run("regression", "Wing + PDB", {"loss.kind": "wing", "pdb": True}),
)

# Model and batch of each size preset; "paper" changes nothing.
SIZES = {
    "tiny": {
        "heatmap": {"input_size": 32, "model.num_stacks": 1, "model.features": 16,
                    "model.depth": 1, "batch_size": 8, "eval_batch_size": 8,
                    "optimizer.learning_rate": 1e-3, "model.conv_lowering": "xla"},
        "regression": {"input_size": 32, "model.features": 4, "model.depth": 3,
                       "model.hidden": 16, "batch_size": 8, "eval_batch_size": 8,
                       "model.conv_lowering": "xla"},
    },
    "small": {
        "heatmap": {"input_size": 64, "model.num_stacks": 1, "model.features": 32,
                    "model.depth": 2, "batch_size": 8, "eval_batch_size": 100,
                    "optimizer.learning_rate": 1e-3},
        "regression": {"model.features": 16, "model.hidden": 256, "batch_size": 8,
                       "eval_batch_size": 100},
    },
    "paper": {"heatmap": {}, "regression": {}},
}


def base_config(family: str, dataset: str):
    """The family's config for ``dataset``: its AWing config, or configs/wing_cnn6.py."""
    if family == "heatmap":
        return wing_cnn6.dataset_config(dataset)
    return wing_cnn6.get_config(dataset)


def apply_overrides(config, overrides: dict) -> None:
    for key, value in overrides.items():
        target = config
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value


def run_config(run: Run, args: argparse.Namespace):
    config = base_config(run.family, args.dataset)
    config.data_dir = args.data_dir or ""
    config.seed = args.seed
    apply_overrides(config, SIZES[args.size][run.family])
    if args.size != "paper":
        config.optimizer.decay_epochs = ()
    if args.steps:
        config.num_train_steps = args.steps
        every = -(-args.steps // EVALUATIONS)
        config.eval_every_steps = every
        config.checkpoint_every_steps = args.steps
        config.log_every_steps = max(1, min(50, every))
    apply_overrides(config, run.overrides)
    return config


def slug(run: Run) -> str:
    name = run.name.lower().replace(" + ", "+").replace(" ", "_")
    return f"{run.family}-{name}"


def validation_curve(workdir: str) -> tuple[list[int], list[float]]:
    steps, nmes = [], []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if "nme" in record:
                steps.append(record["step"])
                nmes.append(record["nme"])
    return steps, nmes


def write_table(results: list[dict], path: str, header: str) -> str:
    t = results[0]["threshold"]
    lines = [header, "",
             f"| family | model | loss | NME % | FR@{t} % | AUC@{t} | steps | wall s |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['family']} | {r['model']} | {r['run']} | {100 * r['nme']:.2f} | "
                     f"{100 * r['failure_rate']:.1f} | {r['auc']:.4f} | {r['steps']} | "
                     f"{r['wall_s']:.0f} |")
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def plot_curves(results: list[dict], baseline_nme: float, path: str) -> None:
    families = [f for f in FAMILIES if any(r["family"] == f for r in results)]
    fig = Figure(figsize=(6 * len(families), 4.5), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(families), squeeze=False)[0]
    for ax, family in zip(axes, families, strict=True):
        for r in (r for r in results if r["family"] == family):
            ax.plot(r["curve_steps"], [100 * v for v in r["curve_nme"]], marker="o", ms=3,
                    label=r["run"])
        ax.axhline(100 * baseline_nme, color="0.5", ls="--", lw=1, label="mean-shape baseline")
        model = next(r["model"] for r in results if r["family"] == family)
        ax.set_title(f"{family}: {model}")
        ax.set_xlabel("step")
        ax.set_ylabel("validation NME %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.savefig(path, format="png")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.compare_losses",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic_faces",
                        help="one of " + ", ".join(sorted(wing_cnn6.DATASET_CONFIGS))
                        + ", optionally with a builder config: w300/ground_truth")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run")
    parser.add_argument("--size", choices=sorted(SIZES), default=None,
                        help="model sizes (default: small for synthetic_faces, else paper)")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="comma-separated subset of: " + ", ".join(FAMILIES))
    parser.add_argument("--runs", default=None,
                        help="comma-separated subset of runs, by workdir name: "
                        + ", ".join(slug(r) for r in RUNS) + " (default: every run of "
                        "--families)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/compare_losses")
    args = parser.parse_args(argv)
    try:
        wing_cnn6.dataset_config(args.dataset)
    except ValueError as e:
        parser.error(str(e))
    args.size = args.size or ("small" if args.dataset == "synthetic_faces" else "paper")
    if args.steps is None and args.size != "paper":
        args.steps = SMALL_STEPS
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    if unknown := set(args.families) - set(FAMILIES):
        parser.error(f"unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    if args.runs is not None:
        args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
        known = [slug(r) for r in RUNS]
        if unknown := [r for r in args.runs if r not in known]:
            parser.error(f"unknown runs {unknown}; known: {', '.join(known)}")
        if not selected_runs(args):
            parser.error(f"none of the runs {args.runs} is in the families {args.families}")
    return args


def selected_runs(args: argparse.Namespace) -> list[Run]:
    """The runs of ``args.families``, in :data:`RUNS` order, narrowed to ``args.runs`` if set."""
    return [r for r in RUNS if r.family in args.families
            and (args.runs is None or slug(r) in args.runs)]


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if not jax.config.jax_compilation_cache_dir:
        from awing_jax.runtime import use_compilation_cache

        # The runs of a family compile identical programs (initialisation, and evaluation at
        # every validation): the programs' on-disk cache loads them instead of rebuilding.
        use_compilation_cache()
    return compare(args)


def compare(args: argparse.Namespace) -> list[dict]:
    from awing_jax import evaluation, input_pipeline, trainer
    from datasets import build

    if args.dataset == "synthetic_faces":
        build.build("synthetic_faces", data_dir=args.data_dir)
    os.makedirs(args.out, exist_ok=True)
    results = []
    start = time.time()
    for run in selected_runs(args):
        config = run_config(run, args)
        workdir = os.path.join(args.out, "runs", slug(run))
        print(f"== {run.family} / {run.name}: {config.model.name}, loss {config.loss.kind}, "
              f"{workdir}", flush=True)
        t0 = time.time()
        summary = trainer.train_and_evaluate(config, workdir)
        wall = time.time() - t0
        steps, nmes = validation_curve(workdir)
        results.append({
            "family": run.family, "run": run.name, "model": config.model.name,
            "loss": config.loss.kind, "steps": steps[-1], "wall_s": wall,
            "threshold": config.failure_threshold, "curve_steps": steps, "curve_nme": nmes,
            **{k: summary[k] for k in ("nme", "failure_rate", "auc")}})
    total = time.time() - start
    baseline = evaluation.mean_shape_baseline(
        input_pipeline.data_source(config.dataset, config.train_split, config.data_dir),
        input_pipeline.data_source(config.dataset, config.eval_split, config.data_dir), config)
    header = (f"{args.dataset} ({config.eval_split}, {config.norm}), size {args.size}, "
              f"seed {args.seed}, {jax.device_count()} x {jax.devices()[0].device_kind} "
              f"({platform.machine()}, {os.cpu_count()} CPUs); total {total / 60:.1f} min. "
              f"Mean-shape baseline: NME {100 * baseline['nme']:.2f} %.")
    table = write_table(results, os.path.join(args.out, "results.md"), header)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"args": vars(args), "total_s": total, "mean_shape_baseline": baseline,
                   "runs": results}, f, indent=1)
    plot_curves(results, baseline["nme"], os.path.join(args.out, "nme_curves.png"))
    print(table)
    print(f"wrote {args.out}/results.md, results.json and nme_curves.png")
    return results


if __name__ == "__main__":
    main()
