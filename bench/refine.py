"""Crops that do not depend on the detector: NME from perturbed boxes, with and without refinement.

    python -m bench.refine --checkpoint runs/demo [--limit 150] [--data_dir DIR]

On the synthetic_faces test split (each stored crop is the "photo"), the checkpoint predicts from
the dataset's box, from the landmarks' extent ("GT box"), and from eight perturbed boxes per face:
the dataset box scaled by 0.7 or 1.3 (±30 % of its size) and shifted by ±20 % of its width and
height (the four diagonal directions). Columns: no refinement (``refine=0``); one refine pass
from the box's own crop (``search_scales=(1,)``); one refine pass after the default search
(``Predictor.run``'s defaults: first-pass crops at ``SEARCH_SCALES`` times the box scale, the most
confident kept). Prints the mean inter-ocular NME of each, and the default's ratio to the
dataset-box figure without refinement (the figure ``evaluate.py`` reports).
"""

from __future__ import annotations

import argparse
import itertools

import cv2
import numpy as np

from awing_jax import crop, input_pipeline, metrics, predict


def perturbations():
    for scale, sx, sy in itertools.product((0.7, 1.3), (-0.2, 0.2), (-0.2, 0.2)):
        yield f"scale {scale:g}, shift ({sx:+g}, {sy:+g})", scale, sx, sy


def perturb(box, scale, sx, sy):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2 + sx * w, (y1 + y2) / 2 + sy * h
    return np.array([cx - scale * w / 2, cy - scale * h / 2, cx + scale * w / 2,
                     cy + scale * h / 2])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--limit", type=int, default=150)
    p.add_argument("--data_dir", default=None)
    args = p.parse_args()
    predictor = predict.Predictor(args.checkpoint)
    source = input_pipeline.data_source("synthetic_faces", "test", args.data_dir)
    images, truth, boxes = [], [], []
    for i in range(min(args.limit, len(source))):
        record = source[i]
        bgr = cv2.imdecode(np.frombuffer(record["image"], np.uint8), cv2.IMREAD_COLOR)
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        truth.append(np.asarray(record["landmarks"], np.float64))
        boxes.append(np.asarray(record["box"], np.float64))
    truth = np.stack(truth)
    print(f"{len(images)} test faces, input {predictor.input_size}, box_scale "
          f"{predictor.box_scale}, scheme {predictor.scheme}, search scales "
          f"{predict.SEARCH_SCALES}")

    def nme(box_sets, **kwargs):
        results = predictor.run_batch(images, [b[None] for b in box_sets], **kwargs)
        pred = np.stack([r.landmarks[0] for r in results])
        return float(np.mean(metrics.nme(pred, truth, scheme=predictor.scheme,
                                         norm="inter_ocular")))

    rows = [("dataset box", boxes), ("GT box (landmarks' extent)",
                                     [crop.landmarks_box(t) for t in truth])]
    rows += [(name, [perturb(b, s, x, y) for b in boxes]) for name, s, x, y in perturbations()]
    reference = None
    print("| boxes | refine 0 | refine 1, no search | refine 1 (default) | default / dataset box "
          "refine 0 |")
    print("|---|---:|---:|---:|---:|")
    worst = 0.0
    for name, box_sets in rows:
        values = [nme(box_sets, refine=0), nme(box_sets, refine=1, search_scales=(1.0,)),
                  nme(box_sets, refine=1)]
        if reference is None:
            reference = values[0]
        ratio = values[2] / reference
        if name.startswith("scale"):
            worst = max(worst, ratio)
        print(f"| {name} | {values[0]:.4f} | {values[1]:.4f} | {values[2]:.4f} | {ratio:.3f} |",
              flush=True)
    print(f"worst perturbed box after one refine pass: {worst:.3f} x the dataset-box NME "
          f"({'within' if worst <= 1.1 else 'NOT within'} 10 %)")


if __name__ == "__main__":
    main()
