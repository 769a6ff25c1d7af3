"""Writes a built dataset split as a COCO keypoints file, to open and correct in an annotation tool.

    python -m datasets.export_coco NAME --split S --out FILE.json [--data_dir D] [--crops DIR]

Coordinates are the photo's: each stored face goes back through its ``to_original`` map, and then
through the inverse of the ``coco_landmarks`` builder's mapping (docs/coco.md), so a dataset built
from a COCO file exports that file's keypoints, flags and boxes again. Faces of one photo share an
image entry.

Datasets of the other builders record no photo path in a form an annotation tool can open (the
``file_name`` of their images is each face's ``source``: annotation file and line or index, and
their width and height are 0), and the synthetic sets have no photo at all: ``--crops DIR``
writes each stored face crop to ``DIR/<index>.jpg`` and exports the points in those crops'
pixels instead. Points without a label are written ``0, 0, 0``; labelled ones ``v = 2`` unless
the dataset recorded COCO's flags.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys

import cv2
import numpy as np
import tensorflow_datasets as tfds

from awing_jax import crop
from awing_jax.landmarks import W300, LandmarkScheme, get_scheme

from .coco_landmarks.coco_landmarks import KEYPOINT_ORIGINS, coco_coordinates
from .common import DatasetError

CATEGORY_ID = 1


def open_builder(name: str, data_dir: str | None):
    """The prepared builder of ``name`` (``"w300/ground_truth"`` style) in ``data_dir``."""
    module = f"{__package__}.{name.partition('/')[0]}"
    if importlib.util.find_spec(module):
        importlib.import_module(module)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        prepared = builder.is_prepared()
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:
        raise DatasetError(f"dataset {name!r}: {e}") from None
    if not prepared:
        where = data_dir or "the default TFDS data dir"
        raise DatasetError(f"dataset {name!r} is not built in {where}; build it with "
                           "python -m datasets.build first")
    return builder


def point_names(scheme: LandmarkScheme) -> list[str]:
    """The scheme's point names; 300W's as COCO-WholeBody names them, others ``<scheme>-<i>``."""
    if scheme.point_names is not None:
        return list(scheme.point_names)
    prefix = "face" if scheme == W300 else scheme.name
    return [f"{prefix}-{i}" for i in range(scheme.num_landmarks)]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def export_split(name: str, split: str, *, data_dir: str | None = None,
                 crops_dir: str | None = None) -> dict:
    """The COCO keypoints dict of one split (see the module docstring)."""
    builder = open_builder(name, data_dir)
    if split not in builder.info.splits:
        raise DatasetError(f"dataset {name!r} has no split {split!r}; it has "
                           f"{sorted(builder.info.splits)}")
    source = builder.as_data_source(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    metadata = dict(builder.info.metadata or {})
    num_points = builder.info.features["landmarks"].shape[0] or (
        np.shape(source[0]["landmarks"])[0] if len(source) else 0)
    scheme = get_scheme(metadata["scheme"]) if "scheme" in metadata else get_scheme(num_points)
    category = dict(metadata.get("category") or {"id": CATEGORY_ID, "name": "face",
                                                 "supercategory": "face"})
    category["keypoints"] = point_names(scheme)
    category.setdefault("skeleton", [])
    origin = metadata.get("keypoint_origin", "pixel_centre")
    if origin not in KEYPOINT_ORIGINS:
        raise DatasetError(f"dataset {name!r}: unknown keypoint_origin {origin!r} in metadata")
    if crops_dir:
        os.makedirs(crops_dir, exist_ok=True)
    images: dict[str, dict] = {}
    annotations = []
    for index in range(len(source)):
        record = source[index]
        landmarks = np.asarray(record["landmarks"], np.float64)
        visible = np.asarray(record["visible"], bool)
        box = np.asarray(record["box"], np.float64).reshape(2, 2)
        flags = np.asarray(record.get("keypoint_flags", np.where(visible, 2, 0)))
        if crops_dir:
            file_name = os.path.join(crops_dir, f"{index:06d}.jpg")
            with open(file_name, "wb") as f:
                f.write(record["image"])
            pixels = cv2.imdecode(np.frombuffer(record["image"], np.uint8), cv2.IMREAD_COLOR)
            height, width = (int(v) for v in pixels.shape[:2])
            image_key, image_id = file_name, index
        else:
            to_original = np.asarray(record["to_original"], np.float64)
            landmarks = crop.apply(to_original, landmarks)
            box = crop.apply(to_original, box)
            if "image_file" in record:
                file_name = _text(record["image_file"])
                image_id = int(record["image_id"])
                width, height = (int(v) for v in record["photo_size"])
            else:
                file_name, image_id, width, height = _text(record["source"]), None, 0, 0
            image_key = file_name
        if image_key not in images:
            images[image_key] = {"id": image_id if image_id is not None else len(images),
                                 "file_name": file_name, "width": width, "height": height}
        keypoints, bbox = coco_coordinates(landmarks, visible, box.reshape(4), flags,
                                           "pixel_centre" if crops_dir else origin)
        annotation_id = int(record["annotation_id"]) if "annotation_id" in record else index + 1
        annotations.append({
            "id": annotation_id,
            "image_id": images[image_key]["id"],
            "category_id": category["id"],
            "keypoints": [round(float(v), 4) for v in keypoints.reshape(-1)],
            "num_keypoints": int(visible.sum()),
            "bbox": [round(float(v), 4) for v in bbox],
            "area": round(float(bbox[2] * bbox[3]), 4),
            "iscrowd": 0,
        })
    return {
        "info": {"description": f"{name} {split}, exported by awing-jax datasets.export_coco",
                 "keypoint_origin": "pixel_centre" if crops_dir else origin},
        "images": list(images.values()),
        "annotations": annotations,
        "categories": [category],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m datasets.export_coco", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="built dataset, e.g. coco_landmarks or w300/ground_truth")
    parser.add_argument("--split", required=True)
    parser.add_argument("--out", required=True, help="COCO keypoints JSON file to write")
    parser.add_argument("--data_dir", help="TFDS data dir of the build")
    parser.add_argument("--crops", help="write the stored face crops here and export the points "
                        "in their pixels (datasets without photo paths)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        coco = export_split(args.name, args.split, data_dir=args.data_dir, crops_dir=args.crops)
        with open(args.out, "w") as f:
            json.dump(coco, f)
    except (DatasetError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(coco['annotations'])} faces on {len(coco['images'])} images, "
          f"{len(coco['categories'][0]['keypoints'])} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
