"""Landmarks of the faces in photos or a video; overlays, JSON, CSV and aligned faces.

    python predict.py --checkpoint runs/wflw --image photo.jpg --out o.png --json o.json
    python predict.py --checkpoint runs/wflw --image photos/ --image "more/*.jpg" --json all.json \\
        --csv all.csv --out overlays/ --align 112 aligned/
    python predict.py --export wflw.jaxexport --image photo.jpg --box 120,80,360,330
    python predict.py --checkpoint runs/wflw --video clip.mp4 --out overlay.mp4 --json clip.json

The model comes from a training (or converted) checkpoint or from an artifact of
``python -m awing_jax.export``. ``--image`` takes files, folders (their images, sorted) and globs,
and may be repeated. Faces are found by ``--detector`` (default: dlib's HOG detector when dlib is
installed, else OpenCV's Haar cascade; see awing_jax/detectors.py) unless ``--box x1,y1,x2,y2``
gives them (one photo only). Each face is predicted from its box, then ``--refine`` times again
from the crop of its predicted landmarks, so that the result does not depend on the detector.
Faces of consecutive photos go through the model together (``--batch_size``).

Outputs: ``--json`` one file for all photos: per photo its file, size and faces (index, box,
landmarks, per-landmark confidence = heatmap peak), or its error; ``--csv`` one row per face
(file, face, box, then x_i, y_i, conf_i per landmark); ``--out`` an overlay image (one photo) or a
folder of overlays (``<name>.png``); ``--align SIZE DIR`` each face warped onto the five-point
face-recognition template, ``DIR/<name>_<face>.png``.

Video (``--video``): every frame's landmarks, tracked from frame to frame (re-detected when the
confidence drops under ``--min_confidence`` or the face leaves), smoothed by a One-Euro filter
(``--min_cutoff``, ``--beta``, ``--d_cutoff``; ``--nosmooth`` turns it off); ``--out`` an overlay
video (.mp4), ``--json`` one entry per frame.

Exit status: 2 for unusable input (a missing or unreadable image or video, a malformed box, no
detector), each named on an ``error:`` line (the other photos are still processed); 1 when no face
is found anywhere (an empty result, written as usual); 0 otherwise.
"""

import csv
import glob
import json
import os
import sys

from absl import app, flags

from awing_jax import errors

flags.DEFINE_string("checkpoint", None, "Workdir holding checkpoints/ (training or converted).")
flags.DEFINE_string("step", "best", "'best', 'latest' or a step number of --checkpoint.")
flags.DEFINE_string("export", None, "An exported model (python -m awing_jax.export) to run "
                    "instead of a checkpoint.")
flags.DEFINE_multi_string("image", [], "Photo file, folder or glob (repeatable).")
flags.DEFINE_string("video", None, "Video file to track faces through (instead of --image).")
flags.DEFINE_multi_string("box", [], "Face box x1,y1,x2,y2 in photo pixels; repeat per face "
                          "(one photo only).")
flags.DEFINE_string("detector", None, "Face detector: dlib-hog, dlib-cnn, haar, or a model file "
                    "(Haar/LBP .xml, YuNet .onnx); default dlib-hog if installed, else haar.")
flags.DEFINE_list("angles", ["0"], "Also scan the photo rotated by these degrees (e.g. "
                  "0,-30,30) for strongly tilted heads; one detector pass per angle.")
flags.DEFINE_float("min_face", None, "Smallest face side to detect, px (default 1/20 of the "
                   "shorter side, at least 20).")
flags.DEFINE_integer("refine", 1, "Passes of re-cropping from the predicted landmarks.")
flags.DEFINE_list("search_scales", ["1", "1.3", "1.6"], "With --refine > 0: first-crop sizes "
                  "(multiples of the box scale) tried per face; the most confident is kept.")
flags.DEFINE_integer("batch_size", 32, "Faces per model call.")
flags.DEFINE_enum("conv_lowering", None, ["xla", "matmul", "winograd", "auto"],
                  "How the model's convolutions run (docs/convolution_lowering.md); default "
                  "awing_jax.export.DEFAULT_CONV_LOWERING (matmul: least compile time).")
flags.DEFINE_string("out", None, "Overlay: an image (one photo), a folder (several), or an .mp4 "
                    "(--video).")
flags.DEFINE_string("json", None, "JSON file for boxes, landmarks and confidences.")
flags.DEFINE_string("csv", None, "CSV file, one row per face (photos only).")
flags.DEFINE_string("align", None, "SIZE of aligned face crops; the folder follows as the one "
                    "positional argument: --align 112 DIR.")
flags.DEFINE_bool("progress", True, "Show a progress bar on stderr.")
flags.DEFINE_bool("smooth", True, "Video: One-Euro smoothing of the landmarks.")
flags.DEFINE_float("min_cutoff", 1.0, "Video: One-Euro cut-off (Hz) of a still face.")
flags.DEFINE_float("beta", 2.0, "Video: One-Euro speed coefficient (per face size/s).")
flags.DEFINE_float("d_cutoff", 1.0, "Video: One-Euro cut-off (Hz) of the speed estimate.")
flags.DEFINE_float("min_confidence", 0.2, "Video: re-detect when a face's mean landmark "
                   "confidence falls below this.")
flags.DEFINE_integer("redetect_every", 0, "Video: also run the detector every N frames "
                     "(0: only when a face is lost).")
FLAGS = flags.FLAGS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm",
                    ".jp2")


def parse_box(text: str) -> list[float]:
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
        raise ValueError(f"--box {text!r}: expected x1,y1,x2,y2 with x1 < x2 and y1 < y2")
    return box


def expand_images(specs: list[str]) -> list[str]:
    """Files of ``--image`` values: a file as given, a folder's images (sorted), a glob's
    matches (sorted). A value matching nothing is an error naming it."""
    files = []
    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(os.path.join(spec, n) for n in os.listdir(spec)
                           if n.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise FileNotFoundError(f"--image {spec}: the folder holds no image "
                                        f"({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
            if not found:
                raise FileNotFoundError(f"--image {spec}: the pattern matches no file")
            files += found
        else:
            files.append(spec)
    return files


def _round(values, digits=3):
    import numpy as np

    return np.round(np.asarray(values, np.float64), digits).tolist()


def _face_record(index, box, points, conf):
    return {"index": index, "box": _round(box), "landmarks": _round(points),
            "confidence": _round(conf, 4)}


def _point_names(predictor):
    names = predictor.landmark_scheme.point_names
    return list(names) if names else None


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _write_rgb(path: str, image) -> None:
    import cv2

    if not cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"cannot write {path}")


def _progress(iterable, total, unit):
    if not FLAGS.progress:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _options():
    try:
        angles = tuple(float(a) for a in FLAGS.angles)
        scales = tuple(float(a) for a in FLAGS.search_scales)
    except ValueError:
        raise ValueError(f"--angles {','.join(FLAGS.angles)} / --search_scales "
                         f"{','.join(FLAGS.search_scales)}: expected numbers") from None
    if not scales or min(scales) <= 0:
        raise ValueError(f"--search_scales {','.join(FLAGS.search_scales)}: expected positive "
                         "numbers")
    return {"detector": FLAGS.detector, "angles": angles, "min_face": FLAGS.min_face,
            "search_scales": scales}


def run_images(predictor, files, boxes, align) -> int:
    import numpy as np

    from awing_jax import predict

    many_out = FLAGS.out is not None and (len(files) > 1 or os.path.isdir(FLAGS.out)
                                          or FLAGS.out.endswith(os.sep))
    if many_out:
        os.makedirs(FLAGS.out, exist_ok=True)
    if align:
        os.makedirs(align[1], exist_ok=True)
    errors = faces_found = 0
    records, rows = [], []

    def read_all():
        for path in files:
            try:
                yield path, predict.read_image(path)
            except (FileNotFoundError, ValueError) as e:
                yield path, e

    if boxes is not None:  # one photo, given boxes
        path = files[0]
        image = predict.read_image(path)
        results = [(path, predictor.run(image, boxes, refine=FLAGS.refine,
                                        search_scales=_options()["search_scales"]))]
        images = {path: image}
    else:
        images = {}

        def keep(items):
            for path, image in items:
                if not isinstance(image, BaseException):
                    images[path] = image
                yield path, image

        results = predictor.run_many(keep(read_all()), refine=FLAGS.refine, **_options())
    source = "given" if boxes is not None else "detector"
    for path, result in _progress(results, len(files), "photo"):
        if isinstance(result, BaseException):
            print(f"error: {result}", file=sys.stderr)
            records.append({"file": path, "error": str(result)})
            errors += 1
            continue
        image = images.pop(path)
        faces_found += len(result.boxes)
        conf = (result.confidence if result.confidence is not None
                else np.full(result.landmarks.shape[:2], np.nan))
        records.append({
            "file": path, "image_size": [int(image.shape[1]), int(image.shape[0])],
            "boxes_from": source,
            "faces": [_face_record(i, b, p, c) for i, (b, p, c) in
                      enumerate(zip(result.boxes, result.landmarks, conf, strict=True))]})
        for i, (b, p, c) in enumerate(zip(result.boxes, result.landmarks, conf, strict=True)):
            row = [path, i, *_round(b)]
            for (x, y), v in zip(p, c, strict=True):
                row += [round(float(x), 3), round(float(y), 3), round(float(v), 4)]
            rows.append(row)
        if FLAGS.out:
            target = (os.path.join(FLAGS.out, _stem(path) + ".png") if many_out else FLAGS.out)
            _write_rgb(target, predict.draw_overlay(image, result))
        if align and len(result.landmarks):
            crops, _ = predictor.align(image, result.landmarks, align[0])
            for i, face in enumerate(crops):
                _write_rgb(os.path.join(align[1], f"{_stem(path)}_{i}.png"), face)
    if FLAGS.json:
        report = {"scheme": predictor.scheme, "num_landmarks": predictor.num_landmarks,
                  "point_names": _point_names(predictor),
                  "input_size": predictor.input_size, "box_scale": predictor.box_scale,
                  "crop_protocol": predictor.crop_protocol,

                  "refine": FLAGS.refine, "detector": FLAGS.detector or "default",
                  "confidence": "heatmap peak of each landmark", "files": records}
        with open(FLAGS.json, "w") as f:
            json.dump(report, f)
    if FLAGS.csv:
        header = ["file", "face", "x1", "y1", "x2", "y2"]
        for i in range(predictor.num_landmarks):
            header += [f"x{i}", f"y{i}", f"conf{i}"]
        with open(FLAGS.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
    done = len(files) - errors
    print(f"{faces_found} face(s) in {done} photo(s) ({source} boxes, refine {FLAGS.refine}), "
          f"{predictor.scheme} scheme, {predictor.num_landmarks} landmarks"
          + (f"; {errors} unreadable" if errors else ""))
    for name in (FLAGS.json, FLAGS.csv, FLAGS.out, align and align[1]):
        if name:
            print(f"wrote {name}")
    if errors:
        return 2
    if not faces_found:
        print(f"no face found in {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}; "
              "give a box with --box x1,y1,x2,y2 or try --detector", file=sys.stderr)
        return 1
    return 0


def run_video(predictor, align) -> int:
    from awing_jax import predict, video

    frames, fps, (width, height) = video.read_video(FLAGS.video)
    smoothing = video.Smoothing(FLAGS.smooth, FLAGS.min_cutoff, FLAGS.beta, FLAGS.d_cutoff)
    options = _options()
    tracked = predictor.video(frames, refine=FLAGS.refine, min_confidence=FLAGS.min_confidence,
                              redetect_every=FLAGS.redetect_every, smoothing=smoothing, **options)
    if align:
        os.makedirs(align[1], exist_ok=True)
    entries, faces = [], 0
    writer = video.VideoWriter(FLAGS.out, fps) if FLAGS.out else None
    try:
        for frame, r in _progress(tracked, None, "frame"):
            faces += len(r.track_ids)
            entries.append({"frame": r.index, "time": round(r.time, 4), "detected": r.detected,
                            "faces": [{"track": int(t), **_face_record(i, b, p, c),
                                       "raw_landmarks": _round(q)} for i, (t, b, p, q, c) in
                                      enumerate(zip(r.track_ids, r.boxes, r.landmarks,
                                                    r.raw_landmarks, r.confidence,
                                                    strict=True))]})
            if writer:
                shown = predict.FacePrediction(r.boxes, r.landmarks, None, None, r.confidence)
                writer.write(predict.draw_overlay(frame, shown))
            if align:
                crops, _ = predictor.align(frame, r.landmarks, align[0])
                for t, face in zip(r.track_ids, crops, strict=True):
                    _write_rgb(os.path.join(align[1], f"{r.index:06d}_{t}.png"), face)
    finally:
        if writer:
            writer.close()
    if FLAGS.json:
        report = {"video": FLAGS.video, "fps": fps, "frame_size": [width, height],
                  "scheme": predictor.scheme, "num_landmarks": predictor.num_landmarks,
                  "point_names": _point_names(predictor), "refine": FLAGS.refine,
                  "detector": FLAGS.detector or "default",
                  "smoothing": {"enabled": FLAGS.smooth, "min_cutoff": FLAGS.min_cutoff,
                                "beta": FLAGS.beta, "d_cutoff": FLAGS.d_cutoff},
                  "frames": entries}
        with open(FLAGS.json, "w") as f:
            json.dump(report, f)
    print(f"{FLAGS.video}: {len(entries)} frame(s), {faces} face detection(s) tracked, "
          f"{predictor.scheme} scheme")
    for name in (FLAGS.json, FLAGS.out):
        if name:
            print(f"wrote {name}")
    if not faces:
        print(f"no face found in any frame of {FLAGS.video}", file=sys.stderr)
        return 1
    return 0


def main(argv):
    if (FLAGS.checkpoint is None) == (FLAGS.export is None):
        raise app.UsageError("give exactly one of --checkpoint and --export")
    if bool(FLAGS.image) == (FLAGS.video is not None):
        raise app.UsageError("give --image (files, folders, globs) or --video")
    positional = argv[1:]
    if FLAGS.align is not None:
        if len(positional) != 1:
            raise app.UsageError("--align SIZE DIR: give the size, then the folder")
        positional = []
    if positional:
        raise app.UsageError(f"unexpected arguments: {positional}")
    from awing_jax.runtime import retain_freed_memory, use_compilation_cache

    retain_freed_memory()  # reuse freed host memory across steps (see awing_jax/runtime.py)
    use_compilation_cache()  # compiled programs kept on disk for the next run

    from awing_jax import detectors, predict

    try:
        align = None
        if FLAGS.align is not None:
            try:
                size = int(FLAGS.align)
            except ValueError:
                size = 0
            if size < 8:
                raise ValueError(f"--align {FLAGS.align!r}: expected a crop size >= 8 px")
            align = (size, argv[1])
        if FLAGS.refine < 0 or FLAGS.batch_size < 1:
            raise ValueError("--refine must be >= 0 and --batch_size >= 1")
        boxes = [parse_box(text) for text in FLAGS.box] or None
        if FLAGS.detector is not None and not boxes:
            detectors.check(FLAGS.detector)
        _options()  # checks --angles and --search_scales
        files = expand_images(FLAGS.image) if FLAGS.image else []
        if boxes is not None and FLAGS.video:
            raise ValueError("--box applies to one photo, not to --video (faces are detected "
                             "and tracked)")
        if boxes is not None and len(files) != 1:
            raise ValueError(f"--box applies to one photo; --image gave {len(files)}")
        if FLAGS.export:
            if FLAGS.conv_lowering:
                raise ValueError("--conv_lowering applies to --checkpoint; an exported model "
                                 "keeps the lowering it was exported with")
            predictor = predict.Predictor.from_export(FLAGS.export)
        else:
            from awing_jax import export

            predictor = predict.Predictor(
                FLAGS.checkpoint, FLAGS.step,
                conv_lowering=FLAGS.conv_lowering or export.DEFAULT_CONV_LOWERING)
        predictor.batch_size = FLAGS.batch_size
        if align:
            from awing_jax import align as align_module

            align_module.five_points(
                [[[0.0, 0.0]] * predictor.num_landmarks], predictor.landmark_scheme)  # check
        if FLAGS.video:
            return run_video(predictor, align)
        return run_images(predictor, files, boxes, align)
    except (FileNotFoundError, ValueError, predict.FaceDetectorUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(argv=None) -> None:
    """Console entry point (``awing-predict``, ``predict.py``): exits with main's status (see
    the module's docstring)."""
    errors.run(main, argv)


if __name__ == "__main__":
    run()
