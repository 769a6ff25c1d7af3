"""Input-pipeline throughput: training augmentation and evaluation crops, images/s and per core.

    python -m bench.input_pipeline [--dataset synthetic_faces] [--data_dir DIR] [--input_size 256]
        [--threads N] [--batches N] [--repeats 5] [--fixture N]

Times ``awing_jax.input_pipeline`` end to end (grain threads, decode, warp, photometric noise,
batching): the median of ``--repeats`` timed runs of ``--batches`` batches after a warm-up. Per-core
figures divide by the cores the run can use (``min(threads, os.sched_getaffinity)``); images per
CPU-second (process CPU time, all threads) is the per-core rate that other processes sharing the
cores skew least. A per-stage breakdown (CPU time, one thread) follows. Without a built
``--dataset`` (or with ``--fixture N``) it times N synthetic 512 px stored crops
(tests/_fixture.py) built into a temporary directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np
import tensorflow_datasets as tfds

from awing_jax import crop, landmarks
from awing_jax import input_pipeline as ip
from configs import base
from tests import _fixture


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds (all threads) of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def stage_breakdown(source, config, repeats: int) -> list[tuple[str, float]]:
    """CPU milliseconds per image of each training stage, one thread, over the first records."""
    augment = ip.TrainAugment.from_config(config)
    no_photometric = dataclasses.replace(augment, blur_prob=0.0, noise_prob=0.0,
                                         occlusion_prob=0.0)
    all_photometric = dataclasses.replace(augment, blur_prob=1.0, noise_prob=1.0,
                                          occlusion_prob=1.0)
    examples = [source[i] for i in range(min(len(source), 32))]
    rng = np.random.default_rng(0)
    size = config.input_size
    matrices = [ip.train_augment_matrix(rng, e["box"], input_size=size,
                                        box_scale=config.box_scale, rotation=augment.rotation,
                                        scale=augment.scale, translation=augment.translation,
                                        flip=augment.flip)[0] for e in examples]
    decoded = [cv2.imdecode(np.frombuffer(e["image"], np.uint8), cv2.IMREAD_COLOR)
               for e in examples]
    n = len(examples)

    def per_image(fn):
        return 1e3 * timed(fn, repeats)[1] / n

    return [
        ("source read (array_record)", per_image(lambda: [source[i] for i in range(n)])),
        ("JPEG decode, full size", per_image(
            lambda: [cv2.imdecode(np.frombuffer(e["image"], np.uint8), cv2.IMREAD_COLOR)
                     for e in examples])),
        ("JPEG decode, half size", per_image(
            lambda: [cv2.imdecode(np.frombuffer(e["image"], np.uint8),
                                  cv2.IMREAD_REDUCED_COLOR_2) for e in examples])),
        ("warpAffine to input", per_image(
            lambda: [crop.warp(d, m, size) for d, m in zip(decoded, matrices, strict=True)])),
        ("transform, photometric off", per_image(
            lambda: [no_photometric(e, rng) for e in examples])),
        ("transform, config probabilities", per_image(
            lambda: [augment(e, rng) for e in examples])),
        ("transform, photometric all on", per_image(
            lambda: [all_photometric(e, rng) for e in examples])),
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic_faces")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--input_size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=16, help="batches per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fixture", type=int, default=0,
                        help="time N synthetic 512 px stored crops instead of --dataset")
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)
    tfds.display_progress_bar(False)
    fixture_dir = None
    name, data_dir = args.dataset, args.data_dir
    if not args.fixture:
        try:
            source = ip.data_source(name, args.split, data_dir)
        except FileNotFoundError:
            print(f"{name} is not built: timing a synthetic fixture instead", file=sys.stderr)
            args.fixture = 128
    if args.fixture:
        fixture_dir = tempfile.mkdtemp(prefix="input_pipeline_bench_")
        name = _fixture.build_fixture(fixture_dir, num_examples=args.fixture, scheme="wflw")
        source = ip.data_source(name, "train", fixture_dir)
    try:
        config = base.get_config()
        config.input_size = args.input_size
        config.prefetch_threads = args.threads
        config.worker_count = 0
        config.scheme = landmarks.get_scheme(source[0]["landmarks"].shape[0]).name
        cores = max(1, min(args.threads, len(os.sched_getaffinity(0))))
        images = args.batches * args.batch_size

        def run_train():
            iterator = ip.train_iterator(source, config, seed=0, num_local_devices=1,
                                         per_device_batch=args.batch_size, shard_index=0,
                                         shard_count=1)
            for _ in range(2):   # warm-up: thread pool, page cache
                next(iterator)
            return lambda: [next(iterator) for _ in range(args.batches)]

        def run_eval():
            def epochs():
                done = 0
                while done < args.batches:
                    for _ in ip.eval_batches(source, config, batch_size=args.batch_size):
                        done += 1
                        if done == args.batches:
                            return
            epochs()   # warm-up
            return epochs

        rows = []
        for path, make in [("train (augment)", run_train), ("eval (face square)", run_eval)]:
            seconds, cpu_seconds = timed(make(), args.repeats)
            rows.append((path, images / seconds, images / seconds / cores, images / cpu_seconds))
        stages = stage_breakdown(source, config, args.repeats)
        stored_side = cv2.imdecode(np.frombuffer(source[0]["image"], np.uint8),
                                   cv2.IMREAD_COLOR).shape[0]
        jpeg_kib = np.mean([len(source[i]["image"]) for i in range(min(len(source), 32))]) / 1024
        num_records = len(source)
    finally:
        if fixture_dir:
            shutil.rmtree(fixture_dir, ignore_errors=True)

    command = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"command: python -m bench.input_pipeline {command}".rstrip())
    print(f"machine: {cpu_model()}, {len(os.sched_getaffinity(0))} cores available "
          f"(os.cpu_count {os.cpu_count()}), load average {os.getloadavg()[0]:.2f}")
    print(f"data: {name} ({'fixture' if fixture_dir else data_dir or 'default data dir'}), "
          f"{num_records} records, stored {stored_side} px JPEG (~{jpeg_kib:.0f} KiB) -> input "
          f"{args.input_size} px; threads {args.threads}, cores used {cores}, batch "
          f"{args.batch_size}, {args.batches} batches x {args.repeats} repeats (median)")
    print()
    print(f"| {'path':<20} | {'images/s':>9} | {'images/s/core':>13} | {'images/CPU-s':>12} |")
    print(f"|{'-' * 22}|{'-' * 11}|{'-' * 15}|{'-' * 14}|")
    for path, rate, per_core, per_cpu_second in rows:
        print(f"| {path:<20} | {rate:>9.0f} | {per_core:>13.0f} | {per_cpu_second:>12.0f} |")
    print()
    print("one thread, CPU ms per image:")
    for stage, ms in stages:
        print(f"  {stage:<32} {ms:6.3f}")


if __name__ == "__main__":
    main()
