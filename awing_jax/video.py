"""Landmarks on video: per-frame prediction, tracking from the landmarks, One-Euro smoothing.

    for frame, result in Predictor("runs/wflw").video("clip.mp4"):
        result.landmarks                       # (N, L, 2) smoothed, photo pixels

Tracking: a face found once is followed without the detector: each frame's crop is the crop
protocol on the previous frame's predicted landmarks (the "GT box" path of
:meth:`awing_jax.predict.Predictor.refined_matrices`). The detector runs again on the first
frame, whenever no face is tracked, every ``redetect_every`` frames (0: never on a schedule), and
after a track is lost: when its mean landmark confidence (heatmap peak) drops under
``min_confidence`` or its landmarks' centre leaves the frame.

Smoothing: a One-Euro filter (Casiraghi, Roussel, Vogel, CHI 2012) per coordinate, in units of
the face's size (the side of its landmarks' extent when its track started) so that the parameters
do not depend on the resolution: a low-pass whose cut-off frequency rises with the landmarks' speed,
``cutoff = min_cutoff + beta * |speed|`` (Hz; speed in face sizes per second). A still face is
smoothed at ``min_cutoff``; a moving one is followed with little lag. ``smooth=False`` returns the
raw per-frame landmarks. Tracks are smoothed separately; a new track starts its filter afresh.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from awing_jax import crop, detectors


class OneEuroFilter:
    """One-Euro filter of an array signal (any shape), sampled at given times.

    Args:
      min_cutoff: cut-off frequency (Hz) of a still signal; lower = smoother, more lag.
      beta: how fast the cut-off rises with the signal's speed (per unit/s); higher = less lag.
      d_cutoff: cut-off frequency (Hz) of the speed estimate.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"One-Euro filter needs min_cutoff > 0, d_cutoff > 0, beta >= 0; "
                             f"got {min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x = self._dx = self._t = None

    @staticmethod
    def _alpha(cutoff, dt):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        if dt <= 0:
            raise ValueError(f"One-Euro filter times must increase, got {self._t} then {t}")
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * (x - self._x) / dt + (1.0 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = self._alpha(cutoff, dt)
        self._x = a * x + (1.0 - a) * self._x
        self._t = t
        return self._x.copy()


@dataclasses.dataclass(frozen=True)
class Smoothing:
    """One-Euro parameters (see :class:`OneEuroFilter`; speeds in face sizes per second)."""

    enabled: bool = True
    min_cutoff: float = 1.0
    beta: float = 2.0
    d_cutoff: float = 1.0


@dataclasses.dataclass(frozen=True)
class FrameResult:
    """The faces of one video frame.

    Attributes:
      index: frame number (0-based).
      time: seconds from the start.
      track_ids: (N,) each face's track (a face keeps its id while it is tracked).
      landmarks: (N, L, 2) photo pixels, smoothed (raw when smoothing is off).
      raw_landmarks: (N, L, 2) the model's landmarks of this frame alone.
      confidence: (N, L) heatmap peak of each landmark.
      boxes: (N, 4) the landmarks' extent ``(x1, y1, x2, y2)``.
      detected: whether the detector ran on this frame.
    """

    index: int
    time: float
    track_ids: np.ndarray
    landmarks: np.ndarray
    raw_landmarks: np.ndarray
    confidence: np.ndarray
    boxes: np.ndarray
    detected: bool


@dataclasses.dataclass
class _Track:
    id: int
    landmarks: np.ndarray  # raw, for the next crop
    filter: OneEuroFilter | None
    scale: float  # face size (px) when the track started: the filter's unit


class FaceTracker:
    """Follows faces through consecutive frames (see the module docstring).

    Args:
      predictor: an :class:`awing_jax.predict.Predictor`.
      detector, angles, min_face: how to find faces (:func:`awing_jax.predict.detect_faces`).
      refine, search_scales: refine passes and first-crop sizes for a newly detected face
        (:meth:`awing_jax.predict.Predictor.run_batch`).
      min_confidence: a track whose mean landmark confidence falls below is dropped.
      redetect_every: run the detector every this many frames too (0: only when needed).
      smoothing: :class:`Smoothing` parameters.
    """

    def __init__(self, predictor, *, detector=None, refine: int = 1,
                 search_scales=(1.0, 1.3, 1.6), angles=(0.0,),
                 min_face: float | None = None, min_confidence: float = 0.2,
                 redetect_every: int = 0, smoothing: Smoothing = Smoothing()):
        self.predictor = predictor
        self.detector, self.refine, self.angles, self.min_face = detector, refine, angles, min_face
        self.search_scales = tuple(search_scales)
        self.min_confidence = float(min_confidence)
        self.redetect_every = int(redetect_every)
        self.smoothing = smoothing
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._index = 0

    def _new_filter(self):
        s = self.smoothing
        return OneEuroFilter(s.min_cutoff, s.beta, s.d_cutoff) if s.enabled else None

    def update(self, frame: np.ndarray, time: float) -> FrameResult:
        """The faces of the next frame ((H, W, 3) uint8 RGB) at ``time`` seconds."""
        p = self.predictor
        height, width = frame.shape[:2]
        kept: list[tuple[_Track, np.ndarray, np.ndarray]] = []
        lost = False
        if self._tracks:
            matrices, labels = p.refined_geometry(np.stack([t.landmarks for t in self._tracks]))
            landmarks, confidence, _ = p.predict_geometry([frame], [0] * len(matrices), matrices,
                                                          labels)

            for track, points, conf in zip(self._tracks, landmarks, confidence, strict=True):
                cx, cy = (points.min(0) + points.max(0)) / 2
                inside = 0 <= cx <= width - 1 and 0 <= cy <= height - 1
                if inside and np.nanmean(conf) >= self.min_confidence:
                    kept.append((track, points, conf))
                else:
                    lost = True
        detect = (not kept or lost or
                  (self.redetect_every > 0 and self._index % self.redetect_every == 0))
        if detect:
            boxes = detectors.detect_faces(frame, self.detector, angles=self.angles,
                                           min_face=self.min_face)
            tracked = [crop.landmarks_box(points) for _, points, _ in kept]
            fresh = [b for b in boxes if not any(
                t[0] <= (b[0] + b[2]) / 2 <= t[2] and t[1] <= (b[1] + b[3]) / 2 <= t[3]
                for t in tracked)]
            if fresh:
                found = p.run(frame, np.stack(fresh), refine=self.refine,
                              search_scales=self.search_scales)
                for points, conf in zip(found.landmarks, found.confidence, strict=True):
                    if np.nanmean(conf) >= self.min_confidence:
                        size = float(np.max(points.max(0) - points.min(0)))
                        kept.append((_Track(self._next_id, points, self._new_filter(),
                                            max(size, 1e-6)), points, conf))
                        self._next_id += 1
        self._tracks = []
        ids, smooth, raw, confs = [], [], [], []
        for track, points, conf in kept:
            track.landmarks = points
            self._tracks.append(track)
            out = points
            if track.filter is not None:
                # Filtered in face sizes: the face's size when its track started (a constant,
                # so the unit itself does not jitter).
                out = track.filter(points / track.scale, time) * track.scale
            ids.append(track.id)
            smooth.append(out)
            raw.append(points)
            confs.append(conf)
        self._index += 1
        num = p.num_landmarks
        stack = lambda xs, shape: np.stack(xs) if xs else np.zeros(shape)  # noqa: E731
        smooth_arr = stack(smooth, (0, num, 2))
        return FrameResult(self._index - 1, float(time), np.asarray(ids, int), smooth_arr,
                           stack(raw, (0, num, 2)), stack(confs, (0, num)),
                           crop.landmarks_box(smooth_arr) if len(smooth) else np.zeros((0, 4)),
                           bool(detect))


def read_video(path: str) -> tuple[Iterator[tuple[np.ndarray, float]], float, tuple[int, int]]:
    """Opens a video: (iterator of (frame (H, W, 3) uint8 RGB, time s), fps, (width, height)).

    Raises FileNotFoundError or ValueError (naming the file) when it cannot be opened or holds no
    frame."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such video file: {path}")
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError(f"cannot open {path} as a video (not a video, or a format OpenCV's "
                         "video backends cannot decode)")
    ok, first = capture.read()
    if not ok or first is None or first.size == 0:
        capture.release()
        raise ValueError(f"{path}: the video holds no frame that OpenCV can decode")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 30.0

    def frames():
        frame, index = first, 0
        try:
            while frame is not None:
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), index / fps
                ok, frame = capture.read()
                frame = frame if ok else None
                index += 1
        finally:
            capture.release()

    return frames(), fps, (first.shape[1], first.shape[0])


def track_frames(predictor, frames: Iterable[tuple[np.ndarray, float]], **tracker_options
                 ) -> Iterator[tuple[np.ndarray, FrameResult]]:
    """Yields (frame, :class:`FrameResult`) for (frame RGB uint8, time s) pairs."""
    tracker = FaceTracker(predictor, **tracker_options)
    for frame, time in frames:
        yield frame, tracker.update(frame, time)


class VideoWriter:
    """An mp4 (``mp4v``) file of RGB frames, opened at the first frame; errors name the file."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps, self._writer = path, fps, None

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            height, width = frame.shape[:2]
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                           (width, height))
            if not self._writer.isOpened():
                raise ValueError(f"cannot write the video {self.path} (is its folder there, "
                                 "does the name end in .mp4?)")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
