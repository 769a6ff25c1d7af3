"""What every face-alignment builder shares: features, the stored crop, image reading, errors.

Builders only parse annotation files and call :func:`make_example`; the crop itself follows
:mod:`awing_jax.crop` so the pipeline and prediction agree with it. Each stored example is the
face square of ``STORED_CONTEXT`` times the face box, resampled to ``image_size`` pixels, JPEG.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import cv2
import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from awing_jax import crop

DEFAULT_IMAGE_SIZE = 512
JPEG_QUALITY = 95


class DatasetError(ValueError):
    """An input file is missing, unreadable or not in the format the builder expects."""


class FaceBuilder(tfds.core.GeneratorBasedBuilder):
    """What the builders of downloaded benchmarks share: the stored crop size and what to do with
    missing photos. Abstract (TFDS registers only its concrete subclasses).

    Args beyond TFDS's (``config``, ``data_dir``, ``file_format``, ...):
      image_size: side of the stored crops; smaller sizes are for tests (the data directory does
        not record it: use a separate ``data_dir``).
      skip_missing_images: skip (and count) faces whose photo is missing or unreadable instead of
        failing on the first.
    """

    def __init__(self, *, image_size: int = DEFAULT_IMAGE_SIZE, skip_missing_images: bool = False,
                 **kwargs):
        self.image_size = image_size
        self.skip_missing_images = skip_missing_images
        super().__init__(**kwargs)


def face_features(num_landmarks: int, image_size: int,
                  extra: Mapping[str, tfds.features.FeatureConnector] | None = None):
    """The features of one stored face.

    - ``image``: (S, S, 3) uint8 RGB crop, JPEG.
    - ``landmarks``: (L, 2) float32, crop pixels, 0-based pixel centres.
    - ``visible``: (L,) bool; False for points the dataset marks as not annotated/occluded-absent.
    - ``box``: (4,) float32 ``x1, y1, x2, y2``, the dataset's face box in crop pixels.
    - ``gt_box``: (4,) float32, the extent of the visible landmarks in crop pixels ("GT box").
    - ``to_original``: (2, 3) float64, maps crop pixels back to the source photo's pixels.
    - ``source``: text, ``"<file relative to the manual dir>[:line or #index]"``.
    """
    features = {
        "image": tfds.features.Image(shape=(image_size, image_size, 3), encoding_format="jpeg"),
        "landmarks": tfds.features.Tensor(shape=(num_landmarks, 2), dtype=np.float32),
        "visible": tfds.features.Tensor(shape=(num_landmarks,), dtype=np.bool_),
        "box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
        "gt_box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
        "to_original": tfds.features.Tensor(shape=(2, 3), dtype=np.float64),
        "source": tfds.features.Text(),
    }
    features.update(extra or {})
    return tfds.features.FeaturesDict(features)


def read_image(path: str) -> np.ndarray:
    """Reads a photo as (H, W, 3) uint8 RGB; grey and 4-channel images become 3-channel RGB."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: image file not found")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"{path}: image file exists but cannot be decoded")
    return to_rgb(image, path, bgr=True)


def to_rgb(image: np.ndarray, origin: str, *, bgr: bool = False) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8 RGB."""
    if image.dtype != np.uint8:
        if image.dtype == np.uint16:
            image = (image // 257).astype(np.uint8)
        else:
            raise DatasetError(f"{origin}: unsupported image dtype {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise DatasetError(f"{origin}: unsupported image shape {image.shape}")
    image = image[..., :3]
    return np.ascontiguousarray(image[..., ::-1]) if bgr else image


def encode_jpeg(image_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DatasetError("JPEG encoding failed")
    return buf.tobytes()


def make_example(image: np.ndarray, landmarks, visible, box, source: str, *,
                 image_size: int = DEFAULT_IMAGE_SIZE, extra: Mapping | None = None) -> dict:
    """Crops one face and returns the feature dict of :func:`face_features`.

    Args:
      image: (H, W, 3) uint8 RGB photo.
      landmarks: (L, 2) photo pixels, 0-based pixel centres (convert 1-based files before).
      visible: (L,) bool.
      box: (4,) ``x1, y1, x2, y2`` face box in photo pixels (same convention).
      source: where the face came from, for error messages and provenance.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    if not np.isfinite(landmarks[visible]).all():
        raise DatasetError(f"{source}: non-finite landmark coordinates")
    if not visible.any():
        raise DatasetError(f"{source}: no visible landmark")
    try:
        matrix = crop.face_square_matrix(box, image_size, crop.STORED_CONTEXT)
    except ValueError as e:
        raise DatasetError(f"{source}: {e}") from None
    pixels = crop.warp(image, matrix, image_size)
    lm_crop = crop.apply(matrix, np.where(visible[:, None], landmarks, 0.0))
    box = np.asarray(box, dtype=np.float64)
    box_crop = crop.apply(matrix, box.reshape(2, 2)).reshape(4)
    example = {
        "image": encode_jpeg(pixels),
        "landmarks": lm_crop.astype(np.float32),
        "visible": visible,
        "box": box_crop.astype(np.float32),
        "gt_box": crop.landmarks_box(lm_crop[visible]).astype(np.float32),
        "to_original": crop.invert(matrix),
        "source": source,
    }
    example.update(extra or {})
    return example


def find_files(root: str, names: Iterable[str]) -> dict[str, str]:
    """Finds each file name anywhere under ``root`` (archives re-packaged with extra nesting).

    Returns name -> path for those found; raises :class:`DatasetError` if a name occurs twice.
    """
    wanted = set(names)
    found: dict[str, str] = {}
    for dirpath, _, filenames in os.walk(root):
        for name in wanted.intersection(filenames):
            path = os.path.join(dirpath, name)
            if name in found:
                raise DatasetError(f"{name} found twice under {root}: {found[name]} and {path}")
            found[name] = path
    return found


def manual_dir(dl_manager) -> str:
    """The manual directory of a TFDS ``dl_manager``; missing or empty: :class:`DatasetError`.

    TFDS's own message names the directory and repeats ``MANUAL_DOWNLOAD_INSTRUCTIONS``.
    """
    try:
        return os.fspath(dl_manager.manual_dir)
    except AssertionError as e:
        raise DatasetError(str(e)) from None


def require_files(root: str, expected: Mapping[str, str]) -> dict[str, str]:
    """Finds every file of ``expected`` (name -> where it goes and where to get it) under ``root``.

    Returns name -> path; raises one :class:`DatasetError` listing every missing file with its hint.
    """
    found = find_files(root, expected)
    missing = [f"{name}: {hint}" for name, hint in expected.items() if name not in found]
    if missing:
        raise missing_files_error(root, missing)
    return found


def find_directory(root: str, name: str) -> str | None:
    """The one folder called ``name`` under ``root`` (``root`` itself included), or None.

    Raises :class:`DatasetError` if there are several.
    """
    found = [dirpath for dirpath, _, _ in os.walk(root) if os.path.basename(dirpath) == name]
    if len(found) > 1:
        raise DatasetError(f"folder {name!r} found {len(found)} times under {root}: {found}")
    return found[0] if found else None


def missing_files_error(root: str, missing: Iterable[str]) -> DatasetError:
    """One error listing every expected file or folder absent from the manual directory ``root``.

    For checks :func:`require_files` cannot express (folders, files needed together); each entry
    of ``missing`` says what is missing, where it goes and where to get it.
    """
    return DatasetError(f"missing under the manual dir {root}:\n"
                        + "\n".join(f"  {entry}" for entry in missing))


class PhotoReader:
    """Reads the photos a split's annotations point to, failing on or skipping bad ones.

    With ``skip_missing_images`` a face whose photo is missing or unreadable is counted and skipped
    (:meth:`read` returns None); without it the first such face raises a :class:`DatasetError`
    naming the photo and the annotation that referenced it. The last photo is kept, since
    consecutive faces often share one.
    """

    def __init__(self, skip_missing_images: bool):
        self.skip_missing_images = skip_missing_images
        self.skipped = 0
        self._last_path: str | None = None
        self._last_image: np.ndarray | None = None

    def read(self, path: str, referenced_by: str) -> np.ndarray | None:
        """(H, W, 3) uint8 RGB, or None for a skipped face; ``referenced_by`` is "file:line"."""
        if path != self._last_path:
            self._last_path = path
            try:
                self._last_image = read_image(path)
            except DatasetError as e:
                if not self.skip_missing_images:
                    raise DatasetError(f"{referenced_by}: {e}") from None
                self._last_image = None
        if self._last_image is None:
            self.skipped += 1
        return self._last_image

    def report(self, dataset: str, split: str) -> None:
        """Prints how many faces of ``split`` were skipped (when skipping is on)."""
        if self.skip_missing_images:
            print(f"{dataset} {split}: skipped {self.skipped} faces whose image is missing or "
                  "unreadable")


def load_matlab_v5(path: str) -> dict:
    """``scipy.io.loadmat`` of a MATLAB v5 file; a failure is a :class:`DatasetError` naming it."""
    try:
        return scipy.io.loadmat(path)
    except (ValueError, NotImplementedError, OSError, TypeError,
            scipy.io.matlab.MatReadError) as e:
        raise DatasetError(f"{path}: not readable as a MATLAB v5 .mat file: {e}") from None


def raise_first_bad(bad, path: str, problem: str) -> None:
    """Raises a :class:`DatasetError` naming the first face flagged in the (N,) bool ``bad``."""
    rows = np.flatnonzero(bad)
    if rows.size:
        raise DatasetError(
            f"{path}: entry {rows[0]} (0-based; {rows.size} entries in all): {problem}")


def is_number(token: str) -> bool:
    """Whether a text token is a finite number."""
    try:
        return bool(np.isfinite(float(token)))
    except ValueError:
        return False


def parse_numbers(tokens: Iterable[str], where: str) -> np.ndarray:
    """Text tokens -> (n,) float64; a :class:`DatasetError` names ``where`` and any bad token."""
    tokens = list(tokens)
    for index, token in enumerate(tokens, start=1):
        if not is_number(token):
            raise DatasetError(f"{where}: token {index} {token!r} is not a finite number")
    return np.array(tokens, dtype=np.float64)
