"""Predicts the landmarks of the faces in a photo; writes an overlay image and a JSON file.

    python predict.py --checkpoint runs/wflw --image photo.jpg --box 120,80,360,330 --out o.png
    python predict.py --export wflw.jaxexport --image photo.jpg --box 120,80,360,330 --json o.json
    python predict.py --checkpoint runs/wflw --image photo.jpg --detector yunet.onnx

The model comes from a training (or converted) checkpoint or from an artifact of
``python -m awing_jax.export``. Face boxes are ``x1,y1,x2,y2`` in photo pixels, one ``--box`` per
face; without any, a face detector finds them (see awing_jax.predict.detect_faces: OpenCV 5 wheels
bundle none, so pass ``--detector`` a model file or give boxes). The overlay shows the boxes, the
landmarks and the predicted boundary heatmap mapped back onto the photo. Exit status 2 for unusable
input (missing or unreadable image, malformed box, no detector), 1 when no face is found.
"""

import json
import sys

from absl import app, flags

flags.DEFINE_string("checkpoint", None, "Workdir holding checkpoints/ (training or converted).")
flags.DEFINE_string("step", "best", "'best', 'latest' or a step number of --checkpoint.")
flags.DEFINE_string("export", None, "An exported model (python -m awing_jax.export) to run "
                    "instead of a checkpoint.")
flags.DEFINE_string("image", None, "Photo to read (any format OpenCV reads).", required=True)
flags.DEFINE_multi_string("box", [], "Face box x1,y1,x2,y2 in photo pixels; repeat per face.")
flags.DEFINE_string("detector", None, "Face detector model file (YuNet .onnx or Haar .xml), "
                    "used when no --box is given.")
flags.DEFINE_string("out", None, "Overlay image to write (e.g. overlay.png).")
flags.DEFINE_string("json", None, "JSON file for the boxes and landmarks.")
FLAGS = flags.FLAGS


def parse_box(text: str) -> list[float]:
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
        raise ValueError(f"--box {text!r}: expected x1,y1,x2,y2 with x1 < x2 and y1 < y2")
    return box


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if (FLAGS.checkpoint is None) == (FLAGS.export is None):
        raise app.UsageError("give exactly one of --checkpoint and --export")
    from awing_jax.runtime import retain_freed_memory, use_compilation_cache

    retain_freed_memory()  # reuse freed host memory across steps (see awing_jax/runtime.py)
    use_compilation_cache()  # compiled programs kept on disk for the next run
    import cv2
    import numpy as np

    from awing_jax import predict

    try:
        image = predict.read_image(FLAGS.image)
        boxes = [parse_box(text) for text in FLAGS.box] or None
        if FLAGS.export:
            predictor = predict.Predictor.from_export(FLAGS.export)
        else:
            predictor = predict.Predictor(FLAGS.checkpoint, FLAGS.step)
        result = predictor.run(image, boxes, detector=FLAGS.detector)
    except (FileNotFoundError, ValueError, predict.FaceDetectorUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    source = "given" if boxes else "detector"
    print(f"{FLAGS.image}: {len(result.boxes)} face(s) ({source} boxes), {predictor.scheme} "
          f"scheme, {predictor.num_landmarks} landmarks")
    if FLAGS.json:
        report = {
            "image": FLAGS.image,
            "image_size": [int(image.shape[1]), int(image.shape[0])],
            "scheme": predictor.scheme,
            "num_landmarks": predictor.num_landmarks,
            "point_names": (list(predictor.landmark_scheme.point_names)
                            if predictor.landmark_scheme.point_names else None),
            "input_size": predictor.input_size,
            "box_scale": predictor.box_scale,
            "boxes_from": source,
            "faces": [{"box": [round(float(v), 3) for v in box],
                       "landmarks": np.round(points, 3).tolist()}
                      for box, points in zip(result.boxes, result.landmarks, strict=True)],
        }
        with open(FLAGS.json, "w") as f:
            json.dump(report, f)
        print(f"wrote {FLAGS.json}")
    if FLAGS.out:
        overlay = predict.draw_overlay(image, result)
        if not cv2.imwrite(FLAGS.out, cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
            print(f"error: cannot write {FLAGS.out}", file=sys.stderr)
            return 2
        print(f"wrote {FLAGS.out}")
    if not len(result.boxes):
        print(f"no face found in {FLAGS.image}; give its box with --box x1,y1,x2,y2",
              file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """Console entry point: parses the flags and exits with main's status."""
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
