"""What every face-alignment builder shares: features, the stored crop, image reading, errors.

Builders only parse annotation files and call :func:`make_example`; the crop itself follows
:mod:`awing_jax.crop` so the pipeline and prediction agree with it. Each stored example is the
face square of ``STORED_CONTEXT`` times the face box, resampled to ``image_size`` pixels, JPEG.
"""

from __future__ import annotations

import io
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping

import cv2
import numpy as np
import PIL.Image
import scipy.io
import simplejpeg
import tensorflow_datasets as tfds

from awing_jax import crop
from awing_jax.errors import UserError

DEFAULT_IMAGE_SIZE = 512
JPEG_QUALITY = 95

# Plausibility of an annotation (see check_face), in units of the face box's longer side.
# A visible landmark may lie outside the photo by at most PHOTO_MARGIN box sides (faces cut by
# the photo's border keep their outside points) and outside its face box by at most BOX_MARGIN.
PHOTO_MARGIN = 0.5
BOX_MARGIN = 1.0
# Written beside the prepared data (the builder's versioned data dir) by every build.
REPORT_FILE = "build_report.json"
JPEG_MAGIC = b"\xff\xd8\xff"


class DatasetError(UserError, ValueError):
    """An input file is missing, unreadable or not in the format the builder expects."""


class MissingImageError(DatasetError):
    """A photo an annotation points to does not exist (skipped with ``skip_missing_images``)."""


class BadImageError(DatasetError):
    """A photo exists but does not decode completely: not an image, truncated or corrupt
    (skipped with ``skip_bad_images``)."""


class BadAnnotationError(DatasetError):
    """An annotation is well-formed but implausible for its photo (:func:`check_face`; skipped
    with ``skip_bad_annotations``)."""


def _summary(values: list[float], sources: list[str]) -> dict:
    """min / 1st percentile / median / 99th percentile / max of ``values``, with the sources of
    the extremes (to look at them with ``python -m datasets.show ... --find SOURCE``)."""
    if not values:
        return {}
    array = np.asarray(values, dtype=np.float64)
    low, high = int(np.argmin(array)), int(np.argmax(array))
    p1, median, p99 = np.percentile(array, [1, 50, 99])
    return {"min": float(array[low]), "p1": float(p1), "median": float(median),
            "p99": float(p99), "max": float(array[high]), "min_source": sources[low],
            "max_source": sources[high]}


class BuildReport:
    """What one build stored and skipped, written as ``build_report.json`` beside the data.

    Per split: the number of examples, the skips (kind, source, reason), statistics of the face
    box size (``sqrt(w h)`` in photo pixels), of the landmark spread (``sqrt(w h)`` of the
    visible landmarks' extent over that of the box) and of the offset between the landmarks'
    centre and the box centre (over the box's longer side), and the stored examples with visible
    landmarks outside their stored crop.
    """

    MAX_LISTED = 100  # sources listed per split for landmarks outside the crop

    def __init__(self, dataset: str, settings: Mapping):
        self.dataset = dataset
        self.settings = dict(settings)
        self.skips: list[dict] = []
        self.left_out: dict[str, str] = {}
        self._splits: dict[str, dict] = {}

    def _split(self, split: str) -> dict:
        return self._splits.setdefault(split, {
            "examples": 0, "sources": [], "box_size_px": [], "landmark_extent_over_box": [],
            "centre_offset_over_box": [], "outside": {"examples": 0, "points": 0, "sources": []}})

    def skip(self, split: str, kind: str, source: str, reason: str) -> None:
        """Records a skipped face; ``kind``: missing_image, bad_image or bad_annotation."""
        self._split(split)
        self.skips.append({"split": split, "kind": kind, "source": source, "reason": reason})

    def skipped(self, split: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for skip in self.skips:
            if skip["split"] == split:
                counts[skip["kind"]] = counts.get(skip["kind"], 0) + 1
        return counts

    def add(self, split: str, example: Mapping) -> None:
        """Records one stored example (the feature dict of :func:`make_example`)."""
        record = self._split(split)
        source = example["source"]
        source = source.decode() if isinstance(source, bytes) else str(source)
        visible = np.asarray(example["visible"], bool)
        points = np.asarray(example["landmarks"], np.float64)[visible]
        box = np.asarray(example["box"], np.float64)
        extent = crop.landmarks_box(points)
        box_w, box_h = box[2] - box[0], box[3] - box[1]
        to_original = np.asarray(example["to_original"], np.float64)
        photo_per_crop = float(np.sqrt(abs(np.linalg.det(to_original[:, :2]))))
        box_size = float(np.sqrt(max(box_w * box_h, 0.0)))
        record["examples"] += 1
        record["sources"].append(source)
        record["box_size_px"].append(box_size * photo_per_crop)
        record["landmark_extent_over_box"].append(
            float(np.sqrt(max((extent[2] - extent[0]) * (extent[3] - extent[1]), 0.0)))
            / max(box_size, 1e-12))
        offset = (extent[:2] + extent[2:]) / 2 - (box[:2] + box[2:]) / 2
        record["centre_offset_over_box"].append(float(np.hypot(*offset)) / max(box_w, box_h))
        size = self.settings.get("image_size")
        if size:
            out = ((points < -0.5) | (points > size - 0.5)).any(axis=1)
            if out.any():
                record["outside"]["examples"] += 1
                record["outside"]["points"] += int(out.sum())
                if len(record["outside"]["sources"]) < self.MAX_LISTED:
                    record["outside"]["sources"].append(source)

    def leave_out(self, split: str, reason: str) -> None:
        self.left_out[split] = reason

    def to_json(self) -> dict:
        splits = {}
        for split, record in self._splits.items():
            if split in self.left_out:
                continue
            sources = record["sources"]
            splits[split] = {
                "examples": record["examples"],
                "skipped": self.skipped(split),
                "box_size_px": _summary(record["box_size_px"], sources),
                "landmark_extent_over_box": _summary(record["landmark_extent_over_box"], sources),
                "centre_offset_over_box": _summary(record["centre_offset_over_box"], sources),
                "landmarks_outside_crop": record["outside"],
            }
        return {"dataset": self.dataset, "settings": self.settings, "splits": splits,
                "left_out_splits": self.left_out, "skips": self.skips}

    def lines(self, max_skips: int = 20) -> list[str]:
        """The printed summary: one line per split, then the skips (at most ``max_skips``)."""
        report = self.to_json()
        lines = [f"{self.dataset} build report:"]
        for split, info in report["splits"].items():
            skipped = sum(info["skipped"].values())
            box, spread = info["box_size_px"], info["landmark_extent_over_box"]
            outside = info["landmarks_outside_crop"]
            line = f"  {split}: {info['examples']} examples, {skipped} skipped"
            if box:
                line += (f"; box {box['min']:.0f}-{box['max']:.0f} px (median "
                         f"{box['median']:.0f}); landmark extent / box {spread['min']:.2f}-"
                         f"{spread['max']:.2f} (median {spread['median']:.2f}); landmarks outside "
                         f"the stored crop in {outside['examples']} examples")
            lines.append(line)
        for split, reason in report["left_out_splits"].items():
            lines.append(f"  {split}: left out, {reason}")
        if self.skips:
            lines.append(f"  skipped faces ({len(self.skips)}):")
            lines += [f"    {skip['split']} {skip['kind']}: {skip['reason']}"
                      for skip in self.skips[:max_skips]]
            if len(self.skips) > max_skips:
                lines.append(f"    ... {len(self.skips) - max_skips} more in {REPORT_FILE}")
        return lines


class ReportingBuilder(tfds.core.GeneratorBasedBuilder):
    """A builder that writes ``build_report.json`` and leaves empty splits out. Abstract.

    Subclasses return ``self.non_empty_splits({...})`` from ``_split_generators``: every stored
    example then enters :attr:`build_report`, and a split that yields nothing is left out with a
    printed note instead of failing TFDS's writer, or raises a :class:`DatasetError` when it is
    required. After the splits are written the report is printed and saved beside the data.
    """

    build_report: BuildReport

    # TFDS prints "Downloading and preparing dataset Unknown size (download: Unknown size, ...)"
    # and "... Subsequent calls will reuse this data." on every build; these builders download
    # nothing, so one line says what is built where, and the report ends the build.
    def _log_download_bytes(self) -> None:
        print(f"building {self.name} in {self.data_dir} ...", flush=True)

    def _log_download_done(self) -> None:
        pass

    def report_settings(self) -> dict:
        """What the report records of the builder's arguments."""
        return {"version": str(self.version),
                "config": self.builder_config.name if self.builder_config else None,
                "image_size": getattr(self, "image_size", None)}

    def _download_and_prepare(self, dl_manager, download_config):
        self.build_report = BuildReport(self.name, self.report_settings())
        try:
            super()._download_and_prepare(dl_manager, download_config)
        except AssertionError as e:  # a builder that does not call non_empty_splits
            if "No examples were yielded" not in str(e):
                raise
            raise DatasetError(f"{self.name}: {e} (a split with no examples)") from None
        # self.data_dir is the directory being prepared, renamed to the final one afterwards.
        with open(os.path.join(self.data_dir, REPORT_FILE), "w") as f:
            json.dump(self.build_report.to_json(), f, indent=1)
        print("\n".join(self.build_report.lines()))

    def non_empty_splits(self, splits: Mapping[str, Iterator], *, required: Iterable[str] = (),
                         why: Mapping[str, str] | None = None) -> dict[str, Iterator]:
        """Drops the splits whose generator yields nothing, and records what the others yield.

        Each generator is started here, up to its first example (so a split whose faces are all
        skipped is read through before the first split is written).

        Args:
          splits: split name -> generator of ``(key, example)``.
          required: splits that must not be empty (e.g. ``train``): a :class:`DatasetError`.
          why: split -> why it may be empty (default: derived from the skips).

        Raises:
          DatasetError: a required split, or every split, is empty.
        """
        kept = {}
        for split, generator in splits.items():
            generator = iter(generator)
            try:
                first = next(generator)
            except StopIteration:
                skipped = self.build_report.skipped(split)
                if skipped:
                    reason = (f"all {sum(skipped.values())} of its faces were skipped ("
                              + ", ".join(f"{n} {kind}" for kind, n in skipped.items()) + ")")
                else:
                    reason = (why or {}).get(split, "no face of the annotations belongs to it")
                if split in required:
                    raise DatasetError(f"{self.name}: split {split} has no examples: {reason}; "
                                       "it is required") from None
                print(f"{self.name}: note: split {split} has no examples ({reason}); it is left "
                      "out of the build")
                self.build_report.leave_out(split, f"no examples: {reason}")
                continue
            kept[split] = self._recorded(split, itertools.chain([first], generator))
        if not kept:
            reasons = "; ".join(f"{split}: {reason}"
                                for split, reason in self.build_report.left_out.items())
            raise DatasetError(f"{self.name}: no split has any example"
                               + (f": {reasons}" if reasons else ""))
        return kept

    def _recorded(self, split: str, generator: Iterator) -> Iterator:
        for key, example in generator:
            self.build_report.add(split, example)
            yield key, example


class FaceBuilder(ReportingBuilder):
    """What the builders of downloaded benchmarks share: the stored crop size and what to do with
    missing photos, damaged photos and implausible annotations. Abstract (TFDS registers only its
    concrete subclasses).

    Args beyond TFDS's (``config``, ``data_dir``, ``file_format``, ...):
      image_size: side of the stored crops; smaller sizes are for tests (the data directory does
        not record it: use a separate ``data_dir``).
      skip_missing_images: skip (and list) faces whose photo file does not exist instead of
        failing on the first.
      skip_bad_images: skip (and list) faces whose photo does not decode completely (not an
        image, truncated, corrupt; see :func:`decode_image`) instead of failing on the first.
      skip_bad_annotations: skip (and list) faces that fail :func:`check_face` instead of
        failing on the first.
    """

    def __init__(self, *, image_size: int = DEFAULT_IMAGE_SIZE, skip_missing_images: bool = False,
                 skip_bad_images: bool = False, skip_bad_annotations: bool = False, **kwargs):
        self.image_size = image_size
        self.skip_missing_images = skip_missing_images
        self.skip_bad_images = skip_bad_images
        self.skip_bad_annotations = skip_bad_annotations
        super().__init__(**kwargs)

    def report_settings(self) -> dict:
        return {**super().report_settings(), "skip_missing_images": self.skip_missing_images,
                "skip_bad_images": self.skip_bad_images,
                "skip_bad_annotations": self.skip_bad_annotations,
                "photo_margin_box_sides": PHOTO_MARGIN, "box_margin_box_sides": BOX_MARGIN}

    def photo_reader(self, split: str) -> PhotoReader:
        """A :class:`PhotoReader` for ``split`` with this builder's skip settings and report."""
        return PhotoReader(self.skip_missing_images, skip_bad_images=self.skip_bad_images,
                           report=self.build_report, split=split)

    def checked_example(self, split: str, source: str, make: Callable[[], dict]) -> dict | None:
        """``make()`` (a :func:`make_example` call), or None when it raises a
        :class:`BadAnnotationError` and ``skip_bad_annotations`` is on (the skip is recorded)."""
        try:
            return make()
        except BadAnnotationError as e:
            if not self.skip_bad_annotations:
                raise BadAnnotationError(
                    f"{e}. Fix the annotation, or build with --skip_bad_annotations to skip and "
                    "list such faces") from None
            self.build_report.skip(split, "bad_annotation", source, str(e))
            return None


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
    """Reads a photo as (H, W, 3) uint8 RGB; grey and 4-channel images become 3-channel RGB.

    The whole file is decoded strictly (:func:`decode_image`). Raises :class:`MissingImageError`
    when there is no such file and :class:`BadImageError` when it does not decode completely.
    """
    if not os.path.isfile(path):
        raise MissingImageError(f"{path}: image file not found")
    with open(path, "rb") as f:
        data = f.read()
    return decode_image(data, path)


def decode_image(data: bytes, origin: str) -> np.ndarray:
    """Decodes a whole encoded photo to (H, W, 3) uint8 RGB, refusing damaged files.

    OpenCV (and Pillow) decode a JPEG whose entropy-coded data is cut short or corrupt without an
    error: libjpeg only warns ("Corrupt JPEG data: premature end of data segment", "... extraneous
    bytes before marker") and fills what is missing with grey. JPEGs are therefore decoded by
    libjpeg-turbo through ``simplejpeg`` in strict mode, where every such warning is an error. Other
    formats (PNG, BMP, ...) must load completely in Pillow (truncation, zlib and chunk checksum
    errors are errors) before OpenCV decodes the pixels. JPEG has no checksum: a flipped bit
    that still forms valid Huffman codes cannot be detected by any decoder.

    Raises:
      BadImageError: naming ``origin``, the file, and what is wrong.
    """
    def bad(problem: str) -> BadImageError:
        return BadImageError(f"{origin}: image file exists but cannot be decoded: {problem}")

    if not data:
        raise bad("the file is empty")
    if data.startswith(JPEG_MAGIC):
        try:
            colorspace = simplejpeg.decode_jpeg_header(data)[2]
            if colorspace not in ("CMYK", "YCCK"):
                return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
            # Validate strictly, then let OpenCV convert (it knows Adobe's inverted CMYK).
            simplejpeg.decode_jpeg(data, colorspace="CMYK", strict=True)
        except ValueError as e:
            raise bad(f"JPEG data truncated or corrupt (libjpeg: {e})") from None
    else:
        try:
            with PIL.Image.open(io.BytesIO(data)) as image:
                image.load()
        except PIL.UnidentifiedImageError:
            raise bad("not an image in a format Pillow or OpenCV read") from None
        except (OSError, SyntaxError, ValueError, EOFError,
                PIL.Image.DecompressionBombError) as e:
            raise bad(f"truncated or corrupt ({e})") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise bad("OpenCV cannot decode it")
    return to_rgb(image, origin, bgr=True)


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

    Raises:
      BadAnnotationError: the face fails :func:`check_face` against this photo.
      DatasetError: non-finite or no visible landmarks, degenerate box.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    if not np.isfinite(landmarks[visible]).all():
        raise DatasetError(f"{source}: non-finite landmark coordinates")
    if not visible.any():
        raise DatasetError(f"{source}: no visible landmark")
    problem = check_face(landmarks, visible, box, image.shape)
    if problem:
        raise BadAnnotationError(f"{source}: {problem}")
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


def _format_box(box) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in box) + ")"


def check_face(landmarks, visible, box, photo_shape, *, photo_margin: float = PHOTO_MARGIN,
               box_margin: float = BOX_MARGIN) -> str | None:
    """What makes a face annotation implausible for its photo, or None if nothing does.

    Distances are measured from the photo's outer pixel edges (``-0.5`` and ``W - 0.5``) and
    from the box's edges, in units of the box's longer side ``s``:

    - the face box must overlap the photo;
    - every visible landmark lies at most ``photo_margin * s`` outside the photo (faces cut by
      the border keep their outside points; a point thousands of pixels away is a slip);
    - every visible landmark lies at most ``box_margin * s`` outside the face box (a box of
      another face, or swapped/shifted coordinates, are far from the landmarks).

    A degenerate box (not finite, ``x2 <= x1`` or ``y2 <= y1``) is left to the crop's own error.

    Args:
      landmarks: (L, 2) photo pixels; visible: (L,) bool; box: (4,) ``x1, y1, x2, y2``;
      photo_shape: (H, W[, C]).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    box = np.asarray(box, dtype=np.float64).reshape(4)
    x1, y1, x2, y2 = box
    if not (np.isfinite(box).all() and x2 > x1 and y2 > y1):
        return None
    height, width = photo_shape[:2]
    side = max(x2 - x1, y2 - y1)
    photo = f"{width}x{height} photo"
    if min(x2, width - 0.5) <= max(x1, -0.5) or min(y2, height - 0.5) <= max(y1, -0.5):
        return (f"face box {_format_box(box)} does not overlap the {photo} (pixel edges "
                f"-0.5 .. {width - 0.5} x -0.5 .. {height - 0.5})")
    indices = np.flatnonzero(visible)
    points = landmarks[indices]
    for name, (lo_x, lo_y, hi_x, hi_y), margin in (
            (f"the {photo}", (-0.5, -0.5, width - 0.5, height - 0.5), photo_margin),
            (f"its face box {_format_box(box)}", (x1, y1, x2, y2), box_margin)):
        outside = np.maximum.reduce([lo_x - points[:, 0], points[:, 0] - hi_x,
                                     lo_y - points[:, 1], points[:, 1] - hi_y,
                                     np.zeros(len(points))])
        worst = int(np.argmax(outside))
        if outside[worst] > margin * side:
            x, y = points[worst]
            return (f"landmark {indices[worst]} at ({x:.1f}, {y:.1f}) lies {outside[worst]:.1f} px "
                    f"outside {name}, more than the allowed {margin:g} face-box sides "
                    f"({margin * side:.1f} px for this box's longer side of {side:.1f} px)")
    return None


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

    A face whose photo is missing (with ``skip_missing_images``) or does not decode completely
    (with ``skip_bad_images``) is skipped: :meth:`read` returns None and the skip is counted and,
    given a ``report``, recorded with the annotation that referenced the photo. Otherwise the
    first such face raises a :class:`DatasetError` naming the photo and that annotation. The last
    photo (or its error) is kept, since consecutive faces often share one.
    """

    def __init__(self, skip_missing_images: bool, *, skip_bad_images: bool = False,
                 report: BuildReport | None = None, split: str = ""):
        self.skip_missing_images = skip_missing_images
        self.skip_bad_images = skip_bad_images
        self.skipped = 0
        self._report = report
        self._split = split
        self._last_path: str | None = None
        self._last_image: np.ndarray | None = None
        self._last_error: DatasetError | None = None

    def read(self, path: str, referenced_by: str) -> np.ndarray | None:
        """(H, W, 3) uint8 RGB, or None for a skipped face; ``referenced_by`` is "file:line"."""
        if path != self._last_path:
            self._last_path = path
            self._last_image = self._last_error = None
            try:
                self._last_image = read_image(path)
            except DatasetError as e:
                self._last_error = e
        error = self._last_error
        if error is None:
            return self._last_image
        if isinstance(error, MissingImageError):
            kind, skip, flag = "missing_image", self.skip_missing_images, "--skip_missing_images"
        else:
            kind, skip, flag = "bad_image", self.skip_bad_images, "--skip_bad_images"
        if not skip:
            raise type(error)(f"{referenced_by}: {error}. Build with {flag} to skip and list "
                              "such faces") from None
        self.skipped += 1
        if self._report is not None:
            self._report.skip(self._split, kind, referenced_by, f"{referenced_by}: {error}")
        return None

    def report(self, dataset: str, split: str) -> None:
        """Prints how many faces of ``split`` were skipped (when skipping is on)."""
        if self.skip_missing_images or self.skip_bad_images:
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
