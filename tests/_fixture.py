"""Synthetic stored faces for the input-pipeline tests and benchmark: no downloads, fully seeded.

Each photo holds a face box with landmarks inside it; every example goes through
:func:`datasets.common.make_example`, so the stored crops follow the real builders' convention. Two
looks: ``textured`` photos (smooth colours, blobs and sensor noise, JPEG sizes like real faces) for
timing, and dark photos with a bright Gaussian dot at chosen landmarks, whose position after any
transform can be measured from the pixels alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import tensorflow_datasets as tfds

from awing_jax import landmarks as landmarks_lib
from datasets import common

FIXTURE_NAME = "input_pipeline_fixture"
PHOTO_SHAPE = (480, 640)
BACKGROUND = 30        # grey level of the dark photos
DOT_PEAK = 220         # dot brightness above the background
DOT_SIGMA = 3.0        # dot radius (Gaussian sigma) in photo pixels


def face_geometry(seed: int, index: int, num_landmarks: int, dots: Sequence[int] = ()):
    """The box and landmarks of fixture face ``index``: ((4,) box, (L, 2) landmarks), photo pixels.

    Landmarks lie in the inner 70% of the box; the dotted ones are at least 10 dot radii apart so
    their dots never overlap.
    """
    rng = np.random.default_rng((seed, index))
    height, width = PHOTO_SHAPE
    side = rng.uniform(150.0, 230.0)
    aspect = rng.uniform(0.85, 1.15)
    w, h = side * aspect, side / aspect
    cx = rng.uniform(0.35, 0.65) * width
    cy = rng.uniform(0.35, 0.65) * height
    box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    dots = list(dots)
    while True:
        unit = rng.uniform(0.15, 0.85, (num_landmarks, 2))
        points = box[:2] + unit * (box[2:] - box[:2])
        dotted = points[dots]
        gaps = np.linalg.norm(dotted[:, None] - dotted[None], axis=-1) + np.eye(len(dots)) * 1e9
        if not dots or gaps.min() >= 10 * DOT_SIGMA:
            return box, points


def dotted_photo(points) -> np.ndarray:
    """A dark (H, W, 3) uint8 photo with a bright Gaussian dot centred on each (x, y) point."""
    height, width = PHOTO_SHAPE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.full(PHOTO_SHAPE, BACKGROUND, np.float32)
    for px, py in np.asarray(points, np.float32).reshape(-1, 2):
        image += DOT_PEAK * np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * DOT_SIGMA**2))
    grey = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def textured_photo(rng: np.random.Generator) -> np.ndarray:
    """An (H, W, 3) uint8 photo of smooth gradients, soft blobs and noise (real-photo JPEG cost)."""
    height, width = PHOTO_SHAPE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, 3).astype(np.float32)
    slope = rng.uniform(-0.15, 0.15, (2, 3)).astype(np.float32)
    image = base + x[..., None] * slope[0] + y[..., None] * slope[1]
    for _ in range(40):
        centre = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        axes = (int(rng.uniform(5, 90)), int(rng.uniform(5, 90)))
        colour = rng.uniform(0, 255, 3).tolist()
        cv2.ellipse(image, centre, axes, rng.uniform(0, 180), 0, 360, colour, -1)
    image = cv2.GaussianBlur(image, (0, 0), 1.5)
    image += rng.normal(0.0, 5.0, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def fixture_source(index: int) -> str:
    return f"fixture/{index:05d}.png"


def fixture_index(source: str | bytes) -> int:
    """Inverse of :func:`fixture_source`."""
    if isinstance(source, bytes):
        source = source.decode()
    return int(source.split("/")[-1].split(".")[0])


class FixtureFaces(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A one-split ("train") dataset of synthetic faces in the builders' stored format.

    Not registered with TFDS: it is built into a data dir and read back from there by name
    (:data:`FIXTURE_NAME`), like any prepared dataset.
    """

    name = FIXTURE_NAME
    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, num_examples: int, scheme: str = "aflw19", image_size: int = 512,
                 textured: bool = True, dots: Sequence[int] = (), nan_records: Sequence[int] = (),
                 seed: int = 0, **kwargs):
        self._num_examples = num_examples
        self._num_landmarks = landmarks_lib.get_scheme(scheme).num_landmarks
        self._image_size = image_size
        self._textured = textured
        self._dots = tuple(dots)
        self._nan_records = set(nan_records)
        self._seed = seed
        super().__init__(**kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=common.face_features(self._num_landmarks, self._image_size))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(self._num_examples):
            box, points = face_geometry(self._seed, i, self._num_landmarks, self._dots)
            if self._textured:
                photo = textured_photo(np.random.default_rng((self._seed, i, 1)))
            else:
                photo = dotted_photo(points[list(self._dots)])
            example = common.make_example(photo, points, np.ones(self._num_landmarks, bool), box,
                                          fixture_source(i), image_size=self._image_size)
            if i in self._nan_records:
                example["landmarks"][0] = np.nan
            yield i, example


def build_fixture(data_dir: str, **kwargs) -> str:
    """Builds :class:`FixtureFaces` with ``kwargs`` into ``data_dir``; returns its TFDS name."""
    FixtureFaces(data_dir=data_dir, file_format="array_record", **kwargs).download_and_prepare()
    return FIXTURE_NAME
