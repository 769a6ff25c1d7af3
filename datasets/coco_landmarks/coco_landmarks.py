"""Your own landmarks: face crops from a COCO keypoints export, any number of named points.

The manual directory holds ``annotations/train.json`` (and ``val.json``, ``test.json`` when
present: each file is a split), an optional ``annotations/scheme.json`` and the photos, named by
each image's ``file_name`` under ``images/`` or relative to the manual directory.

One category carries the face points: its ``keypoints`` list names them, and those names define
the landmark scheme (:mod:`awing_jax.custom_schemes`), which the dataset records in its metadata.
Each annotation of that category is one face: ``keypoints`` ``[x1, y1, v1, ...]`` with ``v = 0``
not labelled (stored as not visible: masked in the loss and the metrics), ``v = 1`` labelled but
occluded and ``v = 2`` labelled and visible (both visible for training); ``bbox`` ``[x, y, w, h]``
is the face box. Annotations of other categories are ignored, crowd annotations and faces with no
labelled point skipped; the counts are printed.

Coordinates (docs/coco.md): COCO keypoints are 0-indexed pixel locations, the column and row of
the pixel the point lies on, which is the awing-jax convention (integers at pixel centres), so
they are used unchanged; ``keypoint_origin="image_corner"`` reads keypoints measured from the
image's top-left corner instead (pixel centres at +0.5). A COCO box ``[x, y, w, h]`` is measured
from the image's corner, so its outer edges are ``x - 0.5`` and ``x + w - 0.5`` in pixel-centre
coordinates. ``datasets.export_coco`` applies the inverse.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from awing_jax import custom_schemes

from .. import common

ANNOTATIONS_DIR = "annotations"
IMAGES_DIR = "images"
SPLITS = ("train", "val", "test")
SCHEME_FILE = "scheme.json"
# keypoint_origin -> what to add to a COCO keypoint to get awing-jax pixel-centre coordinates.
KEYPOINT_ORIGINS = {"pixel_centre": 0.0, "image_corner": -0.5}
# A COCO box corner (measured from the image's corner) -> pixel-centre coordinates.
BOX_OFFSET = -0.5


@dataclasses.dataclass(frozen=True)
class Face:
    """One annotation of the face category.

    Attributes:
      annotation_id, image_id: the COCO ids.
      file_name, width, height: the image entry (width/height 0 when the file gives none).
      keypoints: (K, 3) float64 ``x, y, v`` as in the file.
      bbox: (4,) ``x, y, w, h`` as in the file.
    """

    annotation_id: int
    image_id: int
    file_name: str
    width: int
    height: int
    keypoints: np.ndarray
    bbox: np.ndarray


@dataclasses.dataclass
class CocoFile:
    """A parsed annotation file: the face category, its faces and what was skipped."""

    name: str
    category: dict
    faces: list[Face]
    other_categories: int = 0
    crowd: int = 0
    unlabelled: list[int] = dataclasses.field(default_factory=list)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _load_json(path: str, name: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise common.DatasetError(f"{name}: not valid JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise common.DatasetError(f"{name}: not a UTF-8 text file ({e})") from None


def _list_of_objects(data: dict, key: str, name: str) -> list[dict]:
    items = data.get(key)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise common.DatasetError(f"{name}: '{key}' must be a list of objects")
    return items


def _unique_ids(items: list[dict], what: str, name: str) -> dict[int, dict]:
    by_id: dict[int, dict] = {}
    for position, item in enumerate(items):
        item_id = item.get("id")
        if not _is_id(item_id):
            raise common.DatasetError(f"{name}: {what} #{position} has no integer 'id' "
                                      f"(got {item_id!r})")
        if item_id in by_id:
            raise common.DatasetError(f"{name}: duplicate {what} id {item_id}")
        by_id[item_id] = item
    return by_id


def face_category(categories: dict[int, dict], annotations: list[dict], name: str) -> dict:
    """The one category whose ``keypoints`` name the face points."""
    named = []
    for cat_id, category in categories.items():
        if "keypoints" not in category:
            continue
        points = category["keypoints"]
        if (not isinstance(points, list) or not points
                or not all(isinstance(p, str) and p for p in points)):
            raise common.DatasetError(
                f"{name}: category id {cat_id} ({category.get('name')!r}) has no keypoint names: "
                "'keypoints' must list the name of each point")
        named.append(category)
    if len(named) > 1:
        raise common.DatasetError(
            f"{name}: categories {[c['id'] for c in named]} all have keypoints; one face "
            "category is supported")
    if not named:
        with_points = next((a for a in annotations if "keypoints" in a), None)
        where = (f"annotation id {with_points.get('id')} (category id "
                 f"{with_points.get('category_id')}) has keypoints but its category"
                 if with_points is not None else "no category")
        raise common.DatasetError(
            f"{name}: {where} has no keypoint names: the face category needs a 'keypoints' "
            "list naming the points")
    return named[0]


def _annotation_keypoints(ann: dict, num_points: int, where: str) -> np.ndarray:
    values = ann.get("keypoints")
    if not isinstance(values, list) or not all(_is_number(v) for v in values):
        raise common.DatasetError(f"{where}: 'keypoints' must be a list of finite numbers "
                                  f"[x1, y1, v1, ...], got {str(values)[:80]}")
    if len(values) % 3:
        raise common.DatasetError(f"{where}: {len(values)} keypoint values are not 3·K numbers "
                                  "(x, y, v per point)")
    if len(values) != 3 * num_points:
        raise common.DatasetError(
            f"{where}: {len(values) // 3} keypoints where the category names {num_points} "
            "(K differs between annotations)")
    points = np.asarray(values, np.float64).reshape(num_points, 3)
    flags = points[:, 2]
    if not np.isin(flags, (0.0, 1.0, 2.0)).all():
        bad = sorted(set(flags[~np.isin(flags, (0.0, 1.0, 2.0))].tolist()))
        raise common.DatasetError(f"{where}: visibility flags {bad[:5]} are not 0, 1 or 2")
    return points


def _annotation_box(ann: dict, where: str) -> np.ndarray:
    if "bbox" not in ann:
        raise common.DatasetError(f"{where}: no 'bbox' [x, y, w, h] (the face box)")
    box = ann["bbox"]
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise common.DatasetError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], "
                                  f"got {box!r}")
    if not (box[2] > 0 and box[3] > 0):
        raise common.DatasetError(f"{where}: 'bbox' {box} has a width or height that is not "
                                  "positive")
    return np.asarray(box, np.float64)


def read_annotation_file(path: str, name: str) -> CocoFile:
    """Parses and checks one COCO keypoints file; ``name`` is how errors refer to it."""
    data = _load_json(path, name)
    if not isinstance(data, dict):
        raise common.DatasetError(f"{name}: expected a JSON object with 'images', 'annotations' "
                                  "and 'categories'")
    images = _unique_ids(_list_of_objects(data, "images", name), "image", name)
    annotations = _list_of_objects(data, "annotations", name)
    _unique_ids(annotations, "annotation", name)
    categories = _unique_ids(_list_of_objects(data, "categories", name), "category", name)
    category = face_category(categories, annotations, name)
    num_points = len(category["keypoints"])
    parsed = CocoFile(name, category, [])
    for ann in annotations:
        where = f"{name}: annotation id {ann['id']}"
        if ann.get("category_id") not in categories:
            raise common.DatasetError(f"{where}: category_id {ann.get('category_id')!r} is not "
                                      "a category of the file")
        if ann["category_id"] != category["id"]:
            parsed.other_categories += 1
            continue
        keypoints = _annotation_keypoints(ann, num_points, where)
        box = _annotation_box(ann, where)
        image = images.get(ann.get("image_id"))
        if image is None:
            raise common.DatasetError(f"{where}: image_id {ann.get('image_id')!r} is not an "
                                      "image of the file")
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise common.DatasetError(f"{name}: image id {image['id']} has no 'file_name'")
        if ann.get("iscrowd"):
            parsed.crowd += 1
            continue
        if not (keypoints[:, 2] > 0).any():
            parsed.unlabelled.append(ann["id"])
            continue
        size = [image.get("width", 0), image.get("height", 0)]
        if not all(_is_id(v) and v >= 0 for v in size):
            raise common.DatasetError(f"{name}: image id {image['id']}: width and height must "
                                      f"be whole numbers, got {size}")
        parsed.faces.append(Face(ann["id"], image["id"], file_name, size[0], size[1], keypoints,
                                 box))
    return parsed


def photo_coordinates(keypoints: np.ndarray, bbox, keypoint_origin: str):
    """COCO ``(K, 3)`` keypoints and ``[x, y, w, h]`` -> awing-jax ``(landmarks (K, 2),
    visible (K,), box (4,) x1, y1, x2, y2)`` in 0-based pixel-centre photo coordinates."""
    offset = KEYPOINT_ORIGINS[keypoint_origin]
    visible = keypoints[:, 2] > 0
    landmarks = np.where(visible[:, None], keypoints[:, :2] + offset, 0.0)
    x, y, w, h = (float(v) for v in bbox)
    box = np.array([x, y, x + w, y + h]) + BOX_OFFSET
    return landmarks, visible, box


def coco_coordinates(landmarks, visible, box, flags, keypoint_origin: str):
    """Inverse of :func:`photo_coordinates`: ``(keypoints (K, 3), bbox [x, y, w, h])``; points
    not visible are written ``0, 0, 0`` as COCO does, the others with their flag ``flags``."""
    offset = KEYPOINT_ORIGINS[keypoint_origin]
    landmarks = np.asarray(landmarks, np.float64)
    visible = np.asarray(visible, bool)
    xy = np.where(visible[:, None], landmarks - offset, 0.0)
    v = np.where(visible, np.asarray(flags), 0)
    keypoints = np.concatenate([xy, v[:, None].astype(np.float64)], axis=1)
    x1, y1, x2, y2 = (float(c) for c in np.asarray(box, np.float64) - BOX_OFFSET)
    return keypoints, [x1, y1, x2 - x1, y2 - y1]


def fingerprint(files: list[str], keypoint_origin: str) -> str:
    """SHA-256 of the annotation files (and scheme.json) and the keypoint origin."""
    digest = hashlib.sha256(keypoint_origin.encode())
    for path in files:
        digest.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


class CocoLandmarks(common.FaceBuilder):
    """Face crops from a COCO keypoints export, with the scheme its point names define."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Put your annotation tool's COCO keypoints export in the manual directory:
      - {ANNOTATIONS_DIR}/train.json (and val.json, test.json: each present file is a split)
      - optionally {ANNOTATIONS_DIR}/{SCHEME_FILE} (flip pairs, boundary groups, normaliser)
      - the photos, at {IMAGES_DIR}/<file_name> or <file_name> relative to the manual directory.
    One build per --data_dir: use a separate data dir for each dataset of your own.
    """

    def __init__(self, *, keypoint_origin: str = "pixel_centre", **kwargs):
        if keypoint_origin not in KEYPOINT_ORIGINS:
            raise common.DatasetError(f"keypoint_origin {keypoint_origin!r}: expected one of "
                                      f"{list(KEYPOINT_ORIGINS)}")
        self.keypoint_origin = keypoint_origin
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        extra = {
            "image_file": tfds.features.Text(doc="the image's file_name in the annotations"),
            "image_id": tfds.features.Scalar(dtype=np.int64, doc="COCO image id"),
            "annotation_id": tfds.features.Scalar(dtype=np.int64, doc="COCO annotation id"),
            "photo_size": tfds.features.Tensor(shape=(2,), dtype=np.int32,
                                               doc="width, height of the photo"),
            "keypoint_flags": tfds.features.Tensor(shape=(None,), dtype=np.uint8,
                                                   doc="COCO visibility flag v of each point"),
        }
        return tfds.core.DatasetInfo(
            builder=self,
            description="Face crops from a COCO keypoints export; the landmark scheme is in "
                        "the metadata ('scheme').",
            features=common.face_features(None, self.image_size, extra),
            metadata=tfds.core.MetadataDict(),
        )

    def annotation_files(self, root: str) -> tuple[dict[str, str], list[str]]:
        """split -> path of each present annotation file, and every file the build reads."""
        folder = os.path.join(root, ANNOTATIONS_DIR)
        files = {split: os.path.join(folder, f"{split}.json") for split in SPLITS
                 if os.path.isfile(os.path.join(folder, f"{split}.json"))}
        if not files:
            raise common.missing_files_error(root, [
                f"{ANNOTATIONS_DIR}/train.json (and val.json, test.json): the COCO keypoints "
                "export of your annotation tool"])
        read = list(files.values())
        if os.path.isfile(os.path.join(folder, SCHEME_FILE)):
            read.append(os.path.join(folder, SCHEME_FILE))
        return files, read

    def download_and_prepare(self, *args, download_config=None, **kwargs):
        """As TFDS's, but a build from other annotations into a prepared data dir is an error
        (TFDS would silently keep the old one)."""
        manual = getattr(download_config, "manual_dir", None)
        if manual and self.is_prepared() and os.path.isdir(manual):
            recorded = (self.info.metadata or {}).get("fingerprint")
            _, read = self.annotation_files(os.fspath(manual))
            if recorded != fingerprint(read, self.keypoint_origin):
                raise common.DatasetError(
                    f"{self.data_dir} holds a coco_landmarks build of other annotations (or "
                    "another --keypoint_origin); build into another --data_dir, or delete "
                    f"{self.data_dir} to rebuild")
        return super().download_and_prepare(*args, download_config=download_config, **kwargs)

    def _split_generators(self, dl_manager):
        root = common.manual_dir(dl_manager)
        files, read = self.annotation_files(root)
        parsed = {split: read_annotation_file(path, os.path.relpath(path, root))
                  for split, path in files.items()}
        first = next(iter(parsed.values()))
        names = first.category["keypoints"]
        for coco in parsed.values():
            if coco.category["keypoints"] != names:
                raise common.DatasetError(
                    f"{coco.name}: the face category's keypoint names differ from {first.name}'s "
                    f"({len(coco.category['keypoints'])} vs {len(names)} points)")
        spec_path = os.path.join(root, ANNOTATIONS_DIR, SCHEME_FILE)
        spec_name = os.path.relpath(spec_path, root)
        try:
            spec = custom_schemes.read_spec(spec_path)
            scheme, notes = custom_schemes.scheme_from_names(
                names, name=str(first.category.get("name") or "coco_landmarks"), spec=spec,
                origin=spec_name)
        except ValueError as e:
            message = str(e)
            if not message.startswith((spec_name, spec_path)):
                message = f"{first.name}: category id {first.category['id']}: {message}"
            raise common.DatasetError(message) from None
        print(f"coco_landmarks: {len(names)} points, scheme {scheme.name!r}"
              + (f" (built-in {scheme.name})" if scheme.builtin else "")
              + "".join(f"; {note}" for note in notes))
        category = {k: first.category[k] for k in ("id", "name", "supercategory", "keypoints",
                                                   "skeleton") if k in first.category}
        self.info.metadata.update(
            scheme=scheme.to_dict(), category=category, keypoint_origin=self.keypoint_origin,
            fingerprint=fingerprint(read, self.keypoint_origin),
            annotation_files={split: coco.name for split, coco in parsed.items()})
        splits = {split: self._generate_examples(split, coco, root)
                  for split, coco in parsed.items()}
        return self.non_empty_splits(splits, required=("train",))

    def report_settings(self) -> dict:
        return {**super().report_settings(), "keypoint_origin": self.keypoint_origin}

    def _generate_examples(self, split: str, coco: CocoFile, root: str):
        """Yields ``(annotation id, example)``."""
        for ann_id in coco.unlabelled:
            self.build_report.skip(split, "no_labelled_point", f"{coco.name}#{ann_id}",
                                   f"{coco.name}: annotation id {ann_id}: every point has v = 0")
        reader = self.photo_reader(split)
        for face in coco.faces:
            where = f"{coco.name}: annotation id {face.annotation_id}"
            path = os.path.join(root, IMAGES_DIR, face.file_name)
            if not os.path.isfile(path) and os.path.isfile(os.path.join(root, face.file_name)):
                path = os.path.join(root, face.file_name)
            image = reader.read(path, where)
            if image is None:
                continue
            height, width = image.shape[:2]
            if face.width and face.height and (face.width, face.height) != (width, height):
                raise common.DatasetError(
                    f"{where}: image {face.file_name} is {width}x{height} pixels, the annotation "
                    f"file says {face.width}x{face.height}")
            landmarks, visible, box = photo_coordinates(face.keypoints, face.bbox,
                                                        self.keypoint_origin)
            extra = {"image_file": face.file_name, "image_id": face.image_id,
                     "annotation_id": face.annotation_id,
                     "photo_size": np.array([width, height], np.int32),
                     "keypoint_flags": face.keypoints[:, 2].astype(np.uint8)}
            source = f"{coco.name}#{face.annotation_id}"
            example = self.checked_example(split, source, functools.partial(
                common.make_example, image, landmarks, visible, box, source,
                image_size=self.image_size, extra=extra))
            if example is not None:
                yield face.annotation_id, example
        skipped = []
        if coco.other_categories:
            skipped.append(f"{coco.other_categories} annotations of other categories ignored")
        if coco.crowd:
            skipped.append(f"{coco.crowd} crowd annotations skipped")
        if coco.unlabelled:
            more = "..." if len(coco.unlabelled) > 5 else ""
            skipped.append(f"{len(coco.unlabelled)} faces without a labelled point skipped "
                           f"(ids {coco.unlabelled[:5]}{more})")
        if skipped:
            print(f"coco_landmarks {split}: " + "; ".join(skipped))
        reader.report("coco_landmarks", split)
