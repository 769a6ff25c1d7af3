"""Tests of prediction on photos (awing_jax.predict, predict.py) and of exported models.

Geometry is checked with an oracle in place of the network: a function that renders the true
landmarks' heatmaps in the crop it is given, so the landmarks that come back must be the truth up
to the decoder's float32 precision. The end-to-end runs use a tiny randomly initialised checkpoint
(configs/tiny.py): they check structure, shapes and agreement between paths, not accuracy.
"""

import json
import os
import subprocess
import sys

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from awing_jax import convert, detectors, export, predict
from awing_jax.decode import decode_heatmaps
from awing_jax.landmarks import get_scheme
from awing_jax.models import create_model
from awing_jax.targets import render_boundary_heatmap, render_heatmaps
from configs import tiny
from datasets.synthetic_faces import render
from tests._predict_helpers import random_variables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANVAS = (300, 420)  # photo height, width
ORACLE_SIZE = 64     # model input of the oracle
BOX_SCALE = 1.25


def _photo(seed: int = 0):
    """Two synthetic faces in a larger grey photo: (image, landmarks (2, 68, 2)), photo pixels."""
    rng = np.random.default_rng(seed)
    image = np.full((*CANVAS, 3), 90, np.uint8)
    truth = []
    for top_left in ((40, 30), (230, 110)):  # (x, y) of each rendered face image
        face, points, _ = render.render_face(render.sample_face(rng), rng, 150)
        x, y = top_left
        image[y:y + 150, x:x + 150] = face
        truth.append(points + np.array(top_left))
    return image, np.stack(truth)


def _aligned_box(points: np.ndarray) -> np.ndarray:
    """A square box whose face square at BOX_SCALE is exactly 2 * ORACLE_SIZE whole photo pixels,
    centred near the landmarks: the crop is then a plain 2x downsampling of those pixels."""
    side = 2 * ORACLE_SIZE
    start = np.round(points.mean(axis=0) - (side - 1) / 2)  # first pixel of the square
    centre = start + (side - 1) / 2
    half = side / BOX_SCALE / 2
    return np.concatenate([centre - half, centre + half])


def _oracle(truth: np.ndarray, boxes: np.ndarray, image: np.ndarray):
    """A stand-in for the exported function that knows the true landmarks.

    For the crops it is given it renders the truth's heatmaps (sub-pixel Gaussians) and boundary
    in crop coordinates, computed here from the crop convention written out, and decodes them.
    It also checks the first crop's pixels: a 2x downsampling of the aligned face square.
    """
    size = ORACLE_SIZE
    side = np.max(boxes[:, 2:] - boxes[:, :2], axis=1) * BOX_SCALE
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    in_crop = (truth - centre[:, None]) * (size / side)[:, None, None] + (size - 1) / 2

    def fn(images):
        images = np.asarray(images)
        assert images.shape == (len(boxes), size, size, 3) and images.dtype == np.uint8
        x0, y0 = np.round(centre[0] - (2 * size - 1) / 2).astype(int)
        square = image[y0:y0 + 2 * size, x0:x0 + 2 * size]
        downsampled = cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(images[0].astype(int), downsampled.astype(int), atol=1)
        points = jnp.asarray(in_crop, jnp.float32)
        heatmaps = render_heatmaps(points, jnp.ones(points.shape[:2]), heatmap_size=size // 4,
                                   mode="subpixel")
        boundary = render_boundary_heatmap(points, "300w", heatmap_size=size // 4)
        return decode_heatmaps(heatmaps, mode="subpixel"), jnp.concatenate([heatmaps, boundary],
                                                                           axis=-1)

    return fn


def _oracle_predictor(truth, boxes, image):
    return predict.Predictor.from_function(_oracle(truth, boxes, image), input_size=ORACLE_SIZE,
                                           box_scale=BOX_SCALE, scheme="300w")


@pytest.fixture(scope="module")
def photo():
    image, truth = _photo()
    boxes = np.stack([_aligned_box(truth[0]),
                      np.concatenate([truth[1].min(0) - 6.3, truth[1].max(0) + 4.1])])
    # Every landmark inside its face square, away from the heatmap border.
    for points, box in zip(truth, boxes, strict=True):
        side = np.max(box[2:] - box[:2]) * BOX_SCALE
        assert np.all(np.abs(points - (box[:2] + box[2:]) / 2) < 0.4 * side)
    return image, truth, boxes


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A workdir with a randomly initialised tiny model (configs/tiny.py, 2 stacks, 2 hourglass
    levels: at one level a heatmap maximum of this random model ties with its neighbour within
    float rounding, and the exported and in-process programs then decode different cells)."""
    config = tiny.get_config()
    config.model.num_stacks = 2
    config.model.depth = 2
    variables = random_variables(create_model(config, bn_axis_name=None), config.input_size)
    workdir = tmp_path_factory.mktemp("tiny")
    convert.write_checkpoint(variables, config, str(workdir))
    return str(workdir), config, variables


def test_landmarks_come_back_to_the_photo_exactly(photo):
    image, truth, boxes = photo
    landmarks = _oracle_predictor(truth, boxes, image).predict(image, boxes, refine=0)
    assert landmarks.shape == (2, 68, 2)
    np.testing.assert_allclose(landmarks, truth, atol=1e-2)


def _bilinear(heatmap: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``heatmap`` (h, w) at (u, v) = (column, row) positions inside it."""
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = u - u0, v - v0
    at = lambda dv, du: heatmap[v0 + dv, u0 + du]  # noqa: E731
    return ((1 - fv) * ((1 - fu) * at(0, 0) + fu * at(0, 1))
            + fv * ((1 - fu) * at(1, 0) + fu * at(1, 1)))


def test_boundary_comes_back_onto_the_true_curves(photo):
    image, truth, boxes = photo
    predictor = _oracle_predictor(truth, boxes, image)
    result = predictor.run(image, boxes, refine=0)
    boundary = predictor.boundary_map(image, boxes, refine=0)
    assert boundary.shape == CANVAS and boundary.dtype == np.float32
    on_curves = sorted({i for group in get_scheme("300w").boundary_groups for i in group})
    x, y = np.round(truth[:, on_curves]).astype(int).transpose(2, 0, 1)
    assert np.all(boundary[y, x] > 0.8)
    assert np.all(boundary[:20] == 0.0) and np.all(boundary[:, -20:] == 0.0)  # outside the crops
    # Inside the first face square every photo pixel shows the heatmap at its own position:
    # input u = (x - cx) * S / side + (S - 1) / 2, heatmap (u + 0.5) / 4 - 0.5.
    side = 2 * ORACLE_SIZE
    centre = (boxes[0, :2] + boxes[0, 2:]) / 2
    ys, xs = np.mgrid[0:CANVAS[0], 0:CANVAS[1]]
    u = ((xs - centre[0]) * ORACLE_SIZE / side + (ORACLE_SIZE - 1) / 2 + 0.5) / 4 - 0.5
    v = ((ys - centre[1]) * ORACLE_SIZE / side + (ORACLE_SIZE - 1) / 2 + 0.5) / 4 - 0.5
    inside = (u >= 0) & (u < ORACLE_SIZE // 4 - 1) & (v >= 0) & (v < ORACLE_SIZE // 4 - 1)
    assert inside.sum() > 100 * 100
    expected = _bilinear(result.boundaries[0], u[inside], v[inside])
    np.testing.assert_allclose(boundary[inside], expected, atol=0.02)


def test_no_boxes_means_no_faces(photo):
    image, truth, boxes = photo
    result = _oracle_predictor(truth, boxes, image).run(image, np.zeros((0, 4)))
    assert result.landmarks.shape == (0, 68, 2)


def test_bundled_face_detector_finds_a_face(photo):
    image, truth, _ = photo
    boxes = predict.detect_faces(image, "haar")  # OpenCV's bundled frontal-face Haar cascade
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and np.all(boxes[:, 2:] > boxes[:, :2])
    # Some detection covers a true face: it holds the landmarks' centre and has a comparable size.
    centres = [(t.min(0) + t.max(0)) / 2 for t in truth]
    extents = [np.max(t.max(0) - t.min(0)) for t in truth]
    found = [any(np.all(b[:2] <= c) and np.all(c <= b[2:]) and
                 0.5 < np.max(b[2:] - b[:2]) / e < 3.0 for b in boxes)
             for c, e in zip(centres, extents, strict=True)]
    assert any(found), (boxes, centres)


def test_missing_detector_is_a_clear_error(photo, monkeypatch):
    image, _, _ = photo
    monkeypatch.setattr(detectors, "available", lambda: [])
    with pytest.raises(predict.FaceDetectorUnavailable, match="give the face boxes"):
        predict.detect_faces(image)
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        predict.detect_faces(image, "missing.onnx")


def test_unreadable_images_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.png"):
        predict.read_image(str(tmp_path / "absent.png"))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.png"):
        predict.read_image(str(text))


def test_checkpoint_predictor_matches_its_model(tiny_checkpoint, photo):
    workdir, config, _ = tiny_checkpoint
    image, _, boxes = photo
    predictor = predict.Predictor(workdir)
    assert (predictor.input_size, predictor.box_scale, predictor.scheme) == (32, 1.25, "300w")
    crops, matrices = predictor.crop_faces(image, boxes)
    stacks = predictor.heatmaps(crops)
    assert len(stacks) == 2 and stacks[-1].shape == (2, 8, 8, 69)
    result = predictor.run(image, boxes, refine=0)
    # Two programs, the same network: float32 rounding apart (values ~10; rounding depends on
    # how XLA fuses each program).
    np.testing.assert_allclose(result.boundaries, stacks[-1][..., -1], atol=1e-4)
    in_crop = (np.einsum("nij,nlj->nli", matrices[:, :, :2], result.landmarks)
               + matrices[:, None, :, 2])
    expected = decode_heatmaps(stacks[-1][..., :-1], mode=config.decoder)
    np.testing.assert_allclose(in_crop, expected, atol=1e-3)


def test_export_round_trip_for_two_batch_sizes(tiny_checkpoint, photo, tmp_path):
    workdir, config, variables = tiny_checkpoint
    image, _, boxes = photo
    path = str(tmp_path / "tiny.jaxexport")
    run = subprocess.run(
        [sys.executable, "-m", "awing_jax.export", f"--checkpoint={workdir}", f"--out={path}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    fn, meta = export.load(path)
    assert meta["input_size"] == 32 and meta["scheme"] == "300w" and meta["num_landmarks"] == 68
    # The model in this process, once for the 3 crops: each crop's result is its own (BatchNorm
    # in inference mode), so the first is the 1-crop batch's.
    crops = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    all_landmarks, all_heatmaps = jax.jit(export.landmark_function(config))(variables, crops)
    for batch in (1, 3):
        images = crops[:batch]
        landmarks, heatmaps = fn(images)
        want_landmarks, want_heatmaps = all_landmarks[:batch], all_heatmaps[:batch]
        assert landmarks.shape == (batch, 68, 2) and heatmaps.shape == (batch, 8, 8, 69)
        np.testing.assert_allclose(heatmaps, want_heatmaps, atol=1e-4)  # values ~3
        # pixels; the subpixel decoder's Newton step amplifies float32 rounding
        np.testing.assert_allclose(landmarks, want_landmarks, atol=1e-3)
    exported = predict.Predictor.from_export(path)
    np.testing.assert_allclose(exported.predict(image, boxes),
                               predict.Predictor(workdir).predict(image, boxes), atol=1e-3)
    with pytest.raises(ValueError, match="need the model"):
        exported.heatmaps(np.zeros((1, 32, 32, 3)))


def test_command_line_writes_json_and_overlay(tiny_checkpoint, photo, tmp_path):
    workdir, _, _ = tiny_checkpoint
    image, _, boxes = photo
    image_path = tmp_path / "photo.png"
    cv2.imwrite(str(image_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    box_flags = [f"--box={','.join(f'{v:.2f}' for v in box)}" for box in boxes]
    run = subprocess.run(
        [sys.executable, "predict.py", f"--checkpoint={workdir}", f"--image={image_path}",
         *box_flags, f"--out={tmp_path / 'overlay.png'}", f"--json={tmp_path / 'out.json'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["scheme"] == "300w" and report["num_landmarks"] == 68
    assert len(report["files"]) == 1
    entry = report["files"][0]
    assert entry["image_size"] == [CANVAS[1], CANVAS[0]] and entry["boxes_from"] == "given"
    assert len(entry["faces"]) == 2
    used_boxes = np.asarray([face["box"] for face in entry["faces"]], np.float64)
    np.testing.assert_allclose(used_boxes, boxes, atol=0.01)
    # The command's landmarks are the library's for the same photo and boxes (up to float32
    # rounding of two separately compiled programs, amplified by the sub-pixel decoder).
    expected = predict.Predictor(workdir).predict(image, used_boxes)
    for face, want in zip(entry["faces"], expected, strict=True):
        points = np.asarray(face["landmarks"])
        assert points.shape == (68, 2)
        np.testing.assert_allclose(points, want, atol=2e-3)  # the JSON keeps 3 decimals
    overlay = cv2.imread(str(tmp_path / "overlay.png"))
    assert overlay is not None and overlay.shape == (*CANVAS, 3)


def test_command_line_names_a_missing_image(tiny_checkpoint, tmp_path):
    workdir, _, _ = tiny_checkpoint
    run = subprocess.run(
        [sys.executable, "predict.py", f"--checkpoint={workdir}",
         f"--image={tmp_path / 'absent.jpg'}", "--box=1,2,30,40"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "absent.jpg" in run.stderr
