"""Video tracking and smoothing (awing_jax.video), aligned faces (awing_jax.align).

The tracking tests write real videos (OpenCV VideoWriter, mp4v) of a synthetic face moving on a
known path with pixel noise, and read them back. In place of the network a stand-in model finds
the face in the frame it is given by template matching (so the video's pixels carry the path) and
adds a known per-landmark jitter; it reports low confidence for a crop that does not hold the
face, as a real model's heatmap peaks do.
"""

import json

import cv2
import numpy as np
import pytest

from awing_jax import align, crop, predict, video
from datasets.synthetic_faces import render
from tests._predict_helpers import main_in_process, write_tiny_checkpoint

FRAME = (96, 128)   # height, width
FACE = 48           # rendered face side
JITTER = 1.0        # stand-in model's landmark noise, px (standard deviation)


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory):
    return write_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def face():
    rng = np.random.default_rng(3)
    image, points, _ = render.render_face(render.sample_face(rng), rng, FACE)
    return image, points


def _frames(face, path, seed=0):
    """Frames (RGB uint8) with the face's top-left corner at each (x, y) of ``path`` (sub-pixel,
    off the frame allowed), grey background with pixel noise; and the true landmarks."""
    image, points = face
    rng = np.random.default_rng(seed)
    frames, truth = [], []
    for x, y in path:
        m = np.array([[1.0, 0.0, x], [0.0, 1.0, y]])
        frame = np.full((*FRAME, 3), 110, np.uint8)
        frame = cv2.warpAffine(image, m, FRAME[::-1], dst=frame, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_TRANSPARENT)
        noise = rng.normal(0, 4, frame.shape)
        frames.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
        truth.append(points + np.array([x, y]))
    return frames, np.stack(truth)


class StandIn(predict.Predictor):
    """Finds the face by template matching in the whole frame; jitter from a seeded generator."""

    def __init__(self, face, jitter=JITTER):
        self._setup(None, {"input_size": 64, "box_scale": 1.25, "scheme": "300w",
                           "boundary": False}, variables=None)
        self.template, self.points = face
        self.rng = np.random.default_rng(0)
        self.jitter = jitter

    def locate(self, frame):
        """(top-left (x, y) sub-pixel, match score) of the face in the frame."""
        score = cv2.matchTemplate(frame, self.template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (x, y) = cv2.minMaxLoc(score)

        def vertex(a, b, c):  # parabola through three samples: the peak's offset
            d = a - 2 * b + c
            return 0.0 if d == 0 else 0.5 * (a - c) / d

        h, w = score.shape
        dx = vertex(score[y, x - 1], score[y, x], score[y, x + 1]) if 0 < x < w - 1 else 0.0
        dy = vertex(score[y - 1, x], score[y, x], score[y + 1, x]) if 0 < y < h - 1 else 0.0
        return np.array([x + dx, y + dy]), best

    def detect(self, frame):
        corner, best = self.locate(frame)
        if best < 0.8:
            return np.zeros((0, 4))
        return crop.landmarks_box(self.points + corner)[None]

    def predict_crops(self, images, owners, matrices):
        landmarks, confidence = [np.zeros((0, 68, 2))], [np.zeros((0, 68))]
        for owner, matrix in zip(owners, matrices, strict=True):
            corner, best = self.locate(images[owner])
            points = self.points + corner
            in_crop = crop.apply(matrix, points.mean(0))
            ok = best > 0.8 and np.all((in_crop > 8) & (in_crop < self.input_size - 8))
            landmarks.append((points + self.rng.normal(0, self.jitter, points.shape))[None])
            confidence.append(np.full((1, 68), 0.9 if ok else 0.05))
        return np.concatenate(landmarks), np.concatenate(confidence), None


def _write_video(path, frames, fps=25.0):
    with video.VideoWriter(str(path), fps) as writer:
        for frame in frames:
            writer.write(frame)


def _track(face, frames, tmp_path, **options):
    path = tmp_path / "clip.mp4"
    _write_video(path, frames)
    model = StandIn(face)
    return list(model.video(str(path), detector=model.detect, **options))


def test_one_euro_cuts_jitter_and_bounds_lag():
    rng = np.random.default_rng(0)
    t = np.arange(200) / 30.0
    still = rng.normal(0, 0.02, 200)           # face sizes: 1 px jitter on a 50 px face
    f = video.OneEuroFilter(min_cutoff=1.0, beta=2.0)
    out = np.array([f(x, s) for x, s in zip(still, t, strict=True)])
    ratio = np.std(np.diff(still[30:])) / np.std(np.diff(out[30:]))
    assert ratio > 4, ratio                    # frame-to-frame jitter cut by more than 4x
    moving = 1.0 * t                           # one face size per second
    f = video.OneEuroFilter(min_cutoff=1.0, beta=2.0)
    out = np.array([f(x, s) for x, s in zip(moving, t, strict=True)])
    lag = np.abs(out[30:] - moving[30:]).max()
    assert lag < 0.1, lag                      # under a tenth of the face size
    with pytest.raises(ValueError, match="increase"):
        f(0.0, 0.0)


def test_still_face_jitter_is_cut_and_moving_face_is_followed(face, tmp_path):
    still = [(40.0, 24.0)] * 40
    frames, truth = _frames(face, still)
    results = _track(face, frames, tmp_path)
    assert len(results) == 40 and all(len(r.track_ids) == 1 for _, r in results)
    raw = np.stack([r.raw_landmarks[0] for _, r in results])
    smooth = np.stack([r.landmarks[0] for _, r in results])
    jitter_raw = np.linalg.norm(np.diff(raw[10:], axis=0), axis=-1).mean()
    jitter_smooth = np.linalg.norm(np.diff(smooth[10:], axis=0), axis=-1).mean()
    assert jitter_raw / jitter_smooth > 3, (jitter_raw, jitter_smooth)  # the stated factor: 3x
    # Moving at 1.5 px/frame to the right and 0.5 down: the landmarks follow the path.
    path = [(10.0 + 1.5 * i, 20.0 + 0.5 * i) for i in range(40)]
    frames, truth = _frames(face, path)
    results = _track(face, frames, tmp_path)
    assert all(len(r.track_ids) == 1 and r.track_ids[0] == 0 for _, r in results)
    assert sum(r.detected for _, r in results) == 1   # tracked from the landmarks after frame 0
    smooth = np.stack([r.landmarks[0] for _, r in results])
    raw = np.stack([r.raw_landmarks[0] for _, r in results])
    centre_err = np.linalg.norm(smooth.mean(1) - truth.mean(1), axis=-1)
    assert np.abs(raw.mean(1) - truth.mean(1)).max() < 1.5   # the video carries the path
    assert centre_err[10:].max() < 2.0, centre_err    # lag bound: 2 px at 1.6 px/frame


def test_face_leaving_is_dropped_and_found_again(face, tmp_path):
    path = [(40.0 + 6 * i, 24.0) for i in range(16)] + [(40.0, 24.0)] * 6
    frames, _ = _frames(face, path)
    results = _track(face, frames, tmp_path, smoothing=video.Smoothing(enabled=False))
    counts = [len(r.track_ids) for _, r in results]
    assert counts[0] == 1 and counts[-1] == 1
    gone = [i for i, (x, _) in enumerate(path) if x > FRAME[1]]
    assert all(counts[i] == 0 for i in gone)
    assert results[-1][1].track_ids[0] > 0            # a new track once it is back
    # Off: raw landmarks as they are.
    assert all(np.array_equal(r.landmarks, r.raw_landmarks) for _, r in results)


def test_bad_videos_are_named(face, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.mp4"):
        video.read_video(str(tmp_path / "absent.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(ValueError, match=r"junk\.mp4"):
        video.read_video(str(junk))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.mp4"):
        video.read_video(str(empty))
    # A video without faces: an empty result for every frame, no error.
    blank = [np.full((*FRAME, 3), 110, np.uint8)] * 5
    results = _track(face, blank, tmp_path)
    assert len(results) == 5 and all(len(r.track_ids) == 0 for _, r in results)
    assert all(r.landmarks.shape == (0, 68, 2) for _, r in results)


def test_similarity_is_the_least_squares_one():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.4, 1.7, np.array([3.0, -8.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + shift
    np.testing.assert_allclose(align.similarity(src, dst), np.c_[rot, shift], atol=1e-9)
    # With noise: no other similarity fits better (perturbing its parameters raises the error).
    noisy = dst + rng.normal(0, 2, dst.shape)
    m = align.similarity(src, noisy)
    err = lambda a, b, tx, ty: np.sum(  # noqa: E731
        (src @ np.array([[a, -b], [b, a]]).T + [tx, ty] - noisy) ** 2)
    best = err(m[0, 0], m[1, 0], m[0, 2], m[1, 2])
    for k in range(4):
        for d in (-1e-3, 1e-3):
            p = [m[0, 0], m[1, 0], m[0, 2], m[1, 2]]
            p[k] += d
            assert err(*p) > best


@pytest.mark.parametrize("scheme", ["300w", "wflw", "cofw", "aflw19"])
def test_aligned_face_puts_the_five_points_on_the_template(scheme):
    # Landmarks whose five points are the template under a known similarity: after alignment they
    # land exactly on the template, and the crop is the warp of the photo.
    from awing_jax.landmarks import get_scheme

    num = get_scheme(scheme).num_landmarks
    rng = np.random.default_rng(1)
    size = 96
    to_photo = np.array([[1.3, -0.5, 40.0], [0.5, 1.3, 20.0]])
    groups = align.FIVE_POINTS[scheme]
    points = rng.uniform(-20, 20, (num, 2))
    for group, target in zip(groups, align.template(size), strict=True):
        offsets = rng.normal(0, 1, (len(group), 2))
        points[list(group)] = target + offsets - offsets.mean(0)   # the group's mean = target
    photo_points = crop.apply(to_photo, points)
    image = rng.integers(0, 255, (220, 220, 3), dtype=np.uint8)
    crops, matrices = align.align_faces(image, photo_points[None], scheme, size)
    np.testing.assert_allclose(crop.apply(matrices[0], align.five_points(photo_points, scheme)),
                               align.template(size), atol=1e-6)
    np.testing.assert_array_equal(crops[0], crop.warp(image, matrices[0], size))


def test_scheme_without_the_five_points_cannot_align(monkeypatch):
    monkeypatch.delitem(align.FIVE_POINTS, "cofw")
    with pytest.raises(ValueError, match="no eye centres"):
        align.five_points(np.zeros((29, 2)), "cofw")


def test_cli_video_end_to_end(face, tmp_path, tiny_workdir, capsys):
    frames, _ = _frames(face, [(40.0 + i, 24.0) for i in range(6)])
    clip = tmp_path / "clip.mp4"
    _write_video(clip, frames)
    out, report = tmp_path / "overlay.mp4", tmp_path / "clip.json"
    status = main_in_process(f"--checkpoint={tiny_workdir}", f"--video={clip}", "--detector=haar",
                             f"--out={out}", f"--json={report}", "--noprogress",
                             "--min_confidence=0")
    assert status in (0, 1), capsys.readouterr().err
    data = json.loads(report.read_text())
    assert [f["frame"] for f in data["frames"]] == list(range(6))
    assert data["smoothing"]["enabled"] is True and data["frame_size"] == [FRAME[1], FRAME[0]]
    frames_back = list(video.read_video(str(out))[0])
    assert len(frames_back) == 6 and frames_back[0][0].shape == (*FRAME, 3)
    capsys.readouterr()
    status = main_in_process(f"--checkpoint={tiny_workdir}", f"--video={tmp_path / 'nothing.mp4'}")
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2 and last.startswith("error:") and "nothing.mp4" in last
