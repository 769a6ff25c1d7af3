"""Faces per second through ``Predictor.run_batch`` (crop, model, decode, map back), FAN-4.

    python -m bench.predict_throughput [--faces 8] [--batch 8] [--reps 3] [--tiny]

A model of configs/wflw.py (FAN, 4 stacks, 256 features, 256² input, 98 landmarks; ``--tiny``:
configs/tiny.py) with weights drawn on the host (``awing_jax.models.common.random_variables``: no
initialiser compiled) written as a checkpoint and loaded by ``Predictor``, the
way ``predict.py`` runs. Photos: scikit-image's ``astronaut`` with its hand-annotated face box,
``--faces`` copies (the detector is left out: see bench/detectors.py). Settings: no refinement;
one refine pass; one refine pass after the default search over first-crop scales
(``predict.SEARCH_SCALES``). After a warm-up of each (compilation), every repetition runs the
settings in turn, so that a load change on a shared machine hits them alike; medians of
``--reps`` and each setting's time relative to ``refine 0`` are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from awing_jax import convert, predict
from awing_jax.models import create_model
from awing_jax.models.common import random_variables
from configs import tiny, wflw
from tests import real_faces


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--faces", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tiny", action="store_true")
    args = p.parse_args()
    config = (tiny if args.tiny else wflw).get_config()
    model = create_model(config, bn_axis_name=None)
    size = config.input_size
    variables = random_variables(model, size)
    with tempfile.TemporaryDirectory() as workdir:
        convert.write_checkpoint(variables, config, workdir)
        predictor = predict.Predictor(workdir)
    predictor.batch_size = args.batch
    photo = real_faces.load("astronaut")
    box = np.array(real_faces.FACE_BOXES["astronaut"])
    images = [photo] * args.faces
    boxes = [box] * args.faces
    print(f"model: {config.model.num_stacks} stacks, {config.model.features} features, "
          f"{size}² input, {predictor.num_landmarks} landmarks; {args.faces} faces, batch "
          f"{args.batch}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("| setting | model passes per face | s per run (median) | faces/s | time / refine 0 |")
    print("|---|---:|---:|---:|---:|")
    settings = [("refine 0", {"refine": 0}, 1),
                ("refine 1, no search", {"refine": 1, "search_scales": (1.0,)}, 2),
                (f"refine 1, search {predict.SEARCH_SCALES} (default)", {"refine": 1},
                 2 * len(predict.SEARCH_SCALES))]
    for _, kwargs, _ in settings:
        predictor.run_batch(images, boxes, **kwargs)  # warm-up: compiles the batch shapes
    times = [[] for _ in settings]
    for _ in range(args.reps):
        for i, (_, kwargs, _) in enumerate(settings):
            start = time.perf_counter()
            predictor.run_batch(images, boxes, **kwargs)
            times[i].append(time.perf_counter() - start)
    base = statistics.median(times[0])
    for (name, _, passes), ts in zip(settings, times, strict=True):
        t = statistics.median(ts)
        print(f"| {name} | {passes} | {t:.2f} | {args.faces / t:.2f} | {t / base:.2f} |")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
