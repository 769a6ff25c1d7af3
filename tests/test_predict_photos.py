"""Prediction on real photographs, folders and awkward images: detectors, refinement, batching,
the command line's JSON/CSV/overlay/alignment outputs, and bad input.

Real photographs: the hand-annotated faces of tests/real_faces.py (scikit-image and Matplotlib
ship the photos). The refinement test uses a stand-in model whose error grows with the face's
misplacement in its crop, as a network trained on well-placed crops does.
"""

import csv
import json

import cv2
import numpy as np
import pytest

from awing_jax import crop, detectors, predict
from tests import real_faces
from tests._predict_helpers import main_in_process as _main
from tests._predict_helpers import write_tiny_checkpoint

pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory):
    return write_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny")))


@pytest.mark.skipif("dlib-hog" not in detectors.available(), reason="dlib is not installed")
def test_default_detector_finds_real_faces_tilted_and_small():
    assert detectors.default_detector() == "dlib-hog"
    cases = [(name, real_faces.load(name), real_faces.FACE_BOXES.get(name, []))
             for name in ("astronaut", "chelsea")]
    cases.append(("grace_hopper tilted -30°", *real_faces.rotated("grace_hopper", -30)))
    cases.append(("astronaut 30 px", *real_faces.small("astronaut")))
    for label, image, truth in cases:
        found, false = real_faces.match(predict.detect_faces(image), truth)
        assert (found, false) == (len(truth), 0), label


def test_haar_is_the_fallback_and_names_are_checked(monkeypatch):
    image = real_faces.load("astronaut")
    monkeypatch.setattr(detectors, "available", lambda: ["haar"])
    assert detectors.default_detector() == "haar"
    found, _ = real_faces.match(predict.detect_faces(image), real_faces.FACE_BOXES["astronaut"])
    assert found == 1
    with pytest.raises(ValueError, match="unknown face detector 'yolo'"):
        predict.detect_faces(image, "yolo")


def test_rotated_scans_find_a_tilted_face_once():
    image, truth = real_faces.rotated("astronaut", 40)
    # Haar misses a head tilted by 40 degrees upright; scanning the photo turned by -40 finds it.
    assert real_faces.match(predict.detect_faces(image, "haar"), truth)[0] == 0
    boxes = predict.detect_faces(image, "haar", angles=(0, -40))
    assert real_faces.match(boxes, truth)[0] == 1
    # A face found at two angles is kept once.
    found = detectors.detect(image, "haar", angles=(0, -40, -35))
    centre = (np.asarray(truth[0][:2]) + truth[0][2:]) / 2
    near = [b for b in found.boxes if np.all(np.abs((b[:2] + b[2:]) / 2 - centre) < 20)]
    assert len(near) == 1


class Misplaced(predict.Predictor):
    """A stand-in model: it knows the true landmarks, and its error is ``GAIN`` times the offset
    of the face from where a well-placed crop (the landmarks' extent at box_scale) holds it."""

    GAIN = 0.5

    def __init__(self, truth):
        self._setup(None, {"input_size": 64, "box_scale": 1.25, "scheme": "300w",
                           "boundary": False}, variables=None)
        self.truth = truth
        self.calls = []

    def predict_crops(self, images, owners, matrices):
        self.calls.append(np.array(matrices))
        ideal = self.refined_matrices(self.truth[list(owners)])
        out = []
        for t, m, good in zip(self.truth[list(owners)], matrices, ideal, strict=True):
            seen = crop.apply(m, t)                 # where the face is in the crop it got
            wanted = crop.apply(good, t)            # where the model expects it
            out.append(crop.apply(crop.invert(m), seen + self.GAIN * (wanted - seen)))
        # Surest when the crop's scale is the well-placed one's.
        ratio = np.linalg.det(matrices[:, :, :2]) / np.linalg.det(ideal[:, :, :2])
        confidence = np.exp(-np.abs(np.log(ratio)))[:, None] * np.ones((1, 68))
        return np.stack(out), confidence, None


def test_refinement_makes_the_crop_independent_of_the_box():
    rng = np.random.default_rng(0)
    truth = np.stack([rng.normal(0, 12, (68, 2)) + np.array([100, 90]),
                      rng.normal(0, 20, (68, 2)) + 200])
    gt = crop.landmarks_box(truth)
    size = gt[:, 2:] - gt[:, :2]
    # 30 % larger (each side moved out by 15 %) and shifted by 20 % of the size.
    boxes = np.concatenate([gt[:, :2] + 0.05 * size, gt[:, 2:] + 0.35 * size], axis=1)
    model = Misplaced(truth)
    image = np.zeros((300, 300, 3), np.uint8)
    errors, results = [], []
    for passes in (0, 1, 2):
        model.calls.clear()
        results.append(model.run_batch([image, image], [boxes[:1], boxes[1:]], refine=passes,
                                       search_scales=(1.0,)))
        pred = np.concatenate([r.landmarks for r in results[-1]])
        errors.append(np.abs(pred - truth).max())
    # Each pass crops from the previous landmarks' extent (the "GT box" path) ...
    assert len(model.calls) == 3
    np.testing.assert_allclose(model.calls[1], model.refined_matrices(
        np.concatenate([r.landmarks for r in results[0]])))
    np.testing.assert_allclose(results[2][1].crop_matrices[0], model.calls[2][1])
    # ... so the error contracts by about the model's gain each pass, whatever the first box.
    assert errors[0] > 20, errors
    for k in (1, 2):
        assert errors[k] < 1.1 * Misplaced.GAIN ** k * errors[0], errors


def test_search_keeps_the_most_confident_first_crop():
    rng = np.random.default_rng(1)
    truth = rng.normal(0, 15, (1, 68, 2)) + 150
    gt = crop.landmarks_box(truth)
    centre, half = (gt[:, :2] + gt[:, 2:]) / 2, (gt[:, 2:] - gt[:, :2]) / 2
    boxes = np.concatenate([centre - half / 1.3, centre + half / 1.3], axis=1)  # 1.3x too small
    model = Misplaced(truth)
    image = np.zeros((300, 300, 3), np.uint8)
    result = model.run(image, boxes, refine=1, search_scales=(1.0, 1.3, 1.6))
    assert len(model.calls) == 6                       # per scale: a first pass, a refine pass
    sides = [model.input_size / m[0, 0, 0] for m in model.calls[::2]]
    np.testing.assert_allclose(np.array(sides) / sides[0], [1.0, 1.3, 1.6])
    # The search started at 1.3x is the best-placed one: with this stand-in its landmarks are
    # exact, its refined crop is the well-placed one and the surest, so it is kept.
    np.testing.assert_allclose(result.crop_matrices[0], model.refined_matrices(truth)[0],
                               atol=1e-9)
    assert result.confidence.mean() == pytest.approx(1.0)


def test_batched_photos_match_one_at_a_time(tiny_workdir):
    predictor = predict.Predictor(tiny_workdir)
    predictor.batch_size = 2
    images = [real_faces.load("astronaut"), real_faces.load("grace_hopper")]
    shift = np.array([[0, 0, 0, 0], [5, 0, 5, 7]])
    boxes = [np.array(real_faces.FACE_BOXES["astronaut"] * 2) + shift,
             np.array(real_faces.FACE_BOXES["grace_hopper"])]
    # 3 faces: model calls of 2 and 1 (the shapes the photos alone use too).
    together = predictor.run_batch(images, boxes, refine=1, search_scales=(1.0,))
    for image, b, result in zip(images, boxes, together, strict=True):
        alone = predictor.run(image, b, refine=1, search_scales=(1.0,))
        # Batch composition changes float32 rounding only (amplified by the refine pass).
        np.testing.assert_allclose(result.landmarks, alone.landmarks, atol=2e-2)
        np.testing.assert_allclose(result.confidence, alone.confidence, atol=1e-3)
        assert result.confidence.shape == (len(b), 68)
    # Confidence is each landmark's heatmap peak: the channel maxima of the model's output.
    crops = [crop.warp(images[0], m, predictor.input_size)
             for m in together[0].crop_matrices]
    heatmaps = predictor.heatmaps(np.stack(crops))[-1]
    np.testing.assert_allclose(together[0].confidence, heatmaps[..., :68].max(axis=(1, 2)),
                               atol=1e-4)


def test_awkward_images_are_read_as_rgb8(tmp_path):
    rgb = real_faces.load("astronaut")[:40, :50]
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(
        np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]), cv2.COLOR_RGBA2BGRA))
    np.testing.assert_array_equal(predict.read_image(str(tmp_path / "rgba.png")), rgb)
    wide = rgb.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "16bit.png"), cv2.cvtColor(wide, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(predict.read_image(str(tmp_path / "16bit.png")), rgb)
    grey = rgb[..., 1]
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    np.testing.assert_array_equal(predict.read_image(str(tmp_path / "grey.png")),
                                  np.repeat(grey[..., None], 3, -1))
    cv2.imwrite(str(tmp_path / "1x1.png"), np.zeros((1, 1, 3), np.uint8))
    one = predict.read_image(str(tmp_path / "1x1.png"))
    assert one.shape == (1, 1, 3)
    # A 1x1 photo holds no face: an empty result, no error, whatever the detector.
    for name in detectors.available():
        if name != "dlib-cnn":
            assert predict.detect_faces(one, name).shape == (0, 4)


def test_command_line_on_a_folder_writes_json_csv_overlays_and_aligned_faces(tiny_workdir,
                                                                             tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "grace_hopper"):
        cv2.imwrite(str(photos / f"{name}.png"),
                    cv2.cvtColor(real_faces.load(name), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "grey.png"), real_faces.load("coffee")[..., 0])  # no face
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    status = _main(f"--checkpoint={tiny_workdir}", f"--image={photos}", "--detector=haar",
                   f"--json={tmp_path / 'all.json'}", f"--csv={tmp_path / 'all.csv'}",
                   f"--out={out}", "--batch_size=2", "--noprogress", "--align", "64",
                   str(tmp_path / "aligned"))
    # The broken file is named on an error line and makes the status 2; the others are done.
    err = capsys.readouterr().err
    assert status == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    report = json.loads((tmp_path / "all.json").read_text())
    files = {r["file"].rsplit("/", 1)[-1]: r for r in report["files"]}
    assert sorted(files) == ["astronaut.png", "broken.jpg", "grace_hopper.png", "grey.png"]
    assert "error" in files["broken.jpg"] and files["grey.png"]["faces"] == []
    with open(tmp_path / "all.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:6] == ["file", "face", "x1", "y1", "x2", "y2"] and len(rows[0]) == 6 + 3 * 68
    faces = [(n, face) for n, r in files.items() for face in r.get("faces", [])]
    assert len(rows) - 1 == len(faces) >= 2
    for row, (name, face) in zip(rows[1:], faces, strict=True):
        assert row[0].endswith(name) and int(row[1]) == face["index"]
        values = np.asarray(row[6:], float).reshape(68, 3)
        np.testing.assert_allclose(values[:, :2], face["landmarks"], atol=1e-3)
        np.testing.assert_allclose(values[:, 2], face["confidence"], atol=1e-4)
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png", "grace_hopper.png",
                                                    "grey.png"]
    aligned = sorted((tmp_path / "aligned").iterdir())
    assert len(aligned) == len(faces)
    assert cv2.imread(str(aligned[0])).shape == (64, 64, 3)


@pytest.mark.parametrize("args, message", [
    (["--image={tmp}/missing.png"], "missing.png"),
    (["--image={tmp}/*.nothing"], "matches no file"),
    (["--image={tmp}/empty.png"], "empty.png"),
    (["--image={tmp}/face.png", "--box=1,2,3"], "--box"),
    (["--image={tmp}/face.png", "--align", "4", "{tmp}/a"], "--align"),
    (["--image={tmp}/face.png", "--detector=yolo"], "unknown face detector"),
    (["--image={tmp}/face.png", "--search_scales=1,0"], "--search_scales"),
])
def test_command_line_bad_input_is_one_error_line(tiny_workdir, tmp_path, args, message,
                                                  capsys):
    (tmp_path / "empty.png").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "face.png"), np.zeros((8, 8, 3), np.uint8))
    status = _main(f"--checkpoint={tiny_workdir}", "--noprogress",
                   *[a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert status == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error:") and message in last, err


def test_tiny_image_is_an_empty_result(tiny_workdir, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "dot.png"), np.full((1, 1), 200, np.uint8))  # 1x1 grey
    status = _main(f"--checkpoint={tiny_workdir}", f"--image={tmp_path / 'dot.png'}",
                   "--detector=haar", f"--json={tmp_path / 'o.json'}", "--noprogress")
    assert status == 1 and "no face found" in capsys.readouterr().err
    report = json.loads((tmp_path / "o.json").read_text())
    assert report["files"][0]["faces"] == [] and report["files"][0]["image_size"] == [1, 1]
