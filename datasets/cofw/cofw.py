"""COFW, Caltech Occluded Faces in the Wild: 1,345 train / 507 test faces, 29 points.

Config ``cofw29`` (default) stores the original 29-point annotation of both splits. Config
``cofw68`` stores the 68-point re-annotation of the 507 test faces (Ghiasi & Fowlkes, "Occlusion
coherence", 2015; 300W point order) on the same photos, as a ``test`` split only.

Both annotations use MATLAB's 1-based pixel coordinates; ``MATLAB_ORIGIN`` is subtracted so that the
stored coordinates are 0-based pixel centres. Every point is annotated, occluded ones included, so
``visible`` is all True and occlusion is the extra ``occluded`` (L,) bool feature (True = occluded).
"""

from __future__ import annotations

import functools
import os
from typing import ClassVar, NamedTuple

import h5py
import numpy as np
import tensorflow_datasets as tfds

from awing_jax import landmarks

from .. import common

MATLAB_ORIGIN = 1.0

# split -> (file, suffix of its variables Is<suffix>, phis<suffix>, bboxes<suffix>)
COFW_FILES = {"train": ("COFW_train_color.mat", "Tr"), "test": ("COFW_test_color.mat", "T")}
COFW68_BOXES = "cofw68_test_bboxes.mat"
# Face i (1-based position in IsT) of COFW-68, not zero-padded: "1_points.mat" .. "507_points.mat".
COFW68_POINTS = "{}_points.mat"

SCHEMES = {"cofw29": landmarks.COFW, "cofw68": landmarks.W300}

_COFW_HINT = ("from COFW_color.zip (http://www.vision.caltech.edu/xpburgos/ICCV13/), "
              "anywhere under the manual dir")
_COFW68_HINT = ("from the COFW-68 release (https://github.com/golnazghiasi/cofw68-benchmark, "
                "folder COFW68_Data), anywhere under the manual dir")

_CITATION = """@inproceedings{burgos2013cofw,
  title={Robust face landmark estimation under occlusion},
  author={Burgos-Artizzu, Xavier P. and Perona, Pietro and Doll{\\'a}r, Piotr},
  booktitle={ICCV},
  year={2013}
}
@inproceedings{ghiasi2015occlusion,
  title={Occlusion coherence: Detecting and localizing occluded faces},
  author={Ghiasi, Golnaz and Fowlkes, Charless C.},
  booktitle={arXiv:1506.08347},
  year={2015}
}"""


class Cofw(common.FaceBuilder):
    """COFW faces, cropped around the dataset's face box."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release."}
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        tfds.core.BuilderConfig(
            name="cofw29", description="The original 29 points with occlusion flags; both splits."),
        tfds.core.BuilderConfig(
            name="cofw68", description="The 68-point re-annotation of the 507 test faces."),
    ]
    DEFAULT_CONFIG_NAME = "cofw29"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Put anywhere under the manual dir (sub-folders are searched):
      COFW_train_color.mat, COFW_test_color.mat  (MATLAB v7.3 files of COFW_color.zip,
        http://www.vision.caltech.edu/xpburgos/ICCV13/)
    For the config cofw68, also the folder COFW68_Data of
    https://github.com/golnazghiasi/cofw68-benchmark, holding:
      {COFW68_BOXES}  and  test_annotations/1_points.mat .. 507_points.mat
    """

    def _info(self) -> tfds.core.DatasetInfo:
        num_landmarks = SCHEMES[self.builder_config.name].num_landmarks
        extra = {"occluded": tfds.features.Tensor(shape=(num_landmarks,), dtype=np.bool_)}
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=common.face_features(num_landmarks, self.image_size, extra=extra),
            homepage="http://www.vision.caltech.edu/xpburgos/ICCV13/",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        root = common.manual_dir(dl_manager)
        if self.builder_config.name == "cofw68":
            test_path, boxes_path, points_paths = _find_cofw68(root)
            faces = _read_cofw68(root, boxes_path, points_paths)
            return self.non_empty_splits(
                {"test": self._generate_examples("test", test_path, COFW_FILES["test"][1], faces)},
                required=("test",))
        paths = common.require_files(root, {name: _COFW_HINT for name, _ in COFW_FILES.values()})
        return self.non_empty_splits(
            {split: self._generate_examples(split, paths[name], suffix,
                                            _read_cofw29(root, paths[name], suffix))
             for split, (name, suffix) in COFW_FILES.items()}, required=("train", "test"))

    def _generate_examples(self, split: str, path: str, suffix: str, faces: _Faces):
        """One example per image of the COFW file ``path`` (variables ``Is<suffix>``)."""
        file, refs, _, _ = _open_cofw(path, suffix)
        skipped = 0
        with file:
            for i, ref in enumerate(refs):
                try:
                    image = _read_image(file, ref, f"{path}: Is{suffix}[{i}]")
                except common.BadImageError as e:
                    if not self.skip_bad_images:
                        raise common.BadImageError(
                            f"{e}. Build with --skip_bad_images to skip and list such faces"
                        ) from None
                    self.build_report.skip(split, "bad_image", faces.sources[i], str(e))
                    skipped += 1
                    continue
                example = self.checked_example(split, faces.sources[i], functools.partial(
                    common.make_example, image, faces.landmarks[i],
                    np.ones(len(faces.landmarks[i]), bool), faces.boxes[i], faces.sources[i],
                    image_size=self.image_size, extra={"occluded": faces.occluded[i]}))
                if example is not None:
                    yield i, example
        if self.skip_bad_images:
            print(f"{self.name}/{self.builder_config.name} {split}: "
                  f"skipped {skipped} faces whose image is unreadable")


class _Faces(NamedTuple):
    """The annotation of N faces, in the order of the images in the COFW file.

    Attributes:
      landmarks: (N, L, 2) float64 x, y, 0-based.
      occluded: (N, L) bool.
      boxes: (N, 4) float64 ``x1, y1, x2, y2``, 0-based.
      sources: N provenance strings.
    """

    landmarks: np.ndarray
    occluded: np.ndarray
    boxes: np.ndarray
    sources: list[str]


def _xywh_to_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) MATLAB ``x, y, w, h`` (1-based) -> 0-based ``x1, y1, x2, y2`` with x2 = x1 + w."""
    x, y, w, h = boxes.T
    return np.stack([x, y, x + w, y + h], axis=-1) - MATLAB_ORIGIN


def _read_cofw29(root: str, path: str, suffix: str) -> _Faces:
    """The 29-point annotation stored in a COFW file."""
    file, refs, phis, boxes = _open_cofw(path, suffix)
    file.close()
    num = landmarks.COFW.num_landmarks
    source = os.path.relpath(path, root)
    return _Faces(
        landmarks=np.stack([phis[:, :num], phis[:, num:2 * num]], axis=-1) - MATLAB_ORIGIN,
        occluded=phis[:, 2 * num:] == 1,
        boxes=_xywh_to_corners(boxes),
        sources=[f"{source}#{i}" for i in range(len(refs))],
    )


def _read_cofw68(root: str, boxes_path: str, points_paths: list[str]) -> _Faces:
    """The COFW-68 annotation: one points file per test image and one file of boxes."""
    boxes = _load_cofw68_boxes(boxes_path, len(points_paths))
    points, occluded = zip(*(_load_cofw68_points(path) for path in points_paths), strict=True)
    return _Faces(
        landmarks=np.stack(points) - MATLAB_ORIGIN,
        occluded=np.stack(occluded),
        boxes=_xywh_to_corners(boxes),
        sources=[os.path.relpath(path, root) for path in points_paths],
    )


def _check_xywh(boxes: np.ndarray, path: str, variable: str) -> None:
    """(N, 4) ``x, y, w, h``: finite, positive width and height."""
    good = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    common.raise_first_bad(~good, path, f"{variable}: box [x, y, w, h] not finite with w, h > 0")


def _open_cofw(path: str, suffix: str):
    """Opens a COFW MATLAB v7.3 file and checks its variables.

    Returns:
      ``(file, refs, phis, boxes)``: the open ``h5py.File`` (the caller closes it), (N,) image
      references, (N, 87) ``x1..x29, y1..y29, occ1..occ29`` and (N, 4) ``x, y, w, h``.
    """
    try:
        file = h5py.File(path, "r")
    except OSError as e:
        raise common.DatasetError(
            f"{path}: not readable as a MATLAB v7.3 (HDF5) file: {e}") from None
    try:
        names = {"images": f"Is{suffix}", "phis": f"phis{suffix}", "boxes": f"bboxes{suffix}"}
        missing = [name for name in names.values() if name not in file]
        if missing:
            raise common.DatasetError(f"{path}: missing variables {missing}; "
                                      f"expected {sorted(names.values())}")
        images = file[names["images"]]
        if h5py.check_dtype(ref=images.dtype) is None or images.ndim != 2 or 1 not in images.shape:
            raise common.DatasetError(
                f"{path}: {names['images']} should be a 1 x N cell of images, "
                f"got shape {images.shape} dtype {images.dtype}")
        refs = np.asarray(images).reshape(-1)
        num_faces = len(refs)
        num = landmarks.COFW.num_landmarks
        # h5py shows MATLAB's N x 87 and N x 4 matrices transposed.
        phis, boxes = np.asarray(file[names["phis"]]), np.asarray(file[names["boxes"]])
        if phis.shape != (3 * num, num_faces):
            raise common.DatasetError(
                f"{path}: {names['phis']} has shape {phis.shape}, expected "
                f"({3 * num}, {num_faces}): {num} x, {num} y and {num} occlusion values "
                f"for each of the {num_faces} images")
        if boxes.shape != (4, num_faces):
            raise common.DatasetError(
                f"{path}: {names['boxes']} has shape {boxes.shape}, expected "
                f"(4, {num_faces}): x, y, w, h of each of the {num_faces} images")
        phis, boxes = phis.T.astype(np.float64), boxes.T.astype(np.float64)
        common.raise_first_bad(~np.isfinite(phis[:, :2 * num]).all(axis=1), path,
                               f"non-finite landmark coordinate in {names['phis']}")
        common.raise_first_bad(~np.isin(phis[:, 2 * num:], (0, 1)).all(axis=1), path,
                               f"occlusion flag other than 0 or 1 in {names['phis']}")
        _check_xywh(boxes, path, names["boxes"])
    except BaseException:
        file.close()
        raise
    return file, refs, phis, boxes


def _read_image(file: h5py.File, ref, origin: str) -> np.ndarray:
    """One cell of ``IsTr``/``IsT`` as (H, W, 3) uint8 RGB."""
    try:
        # MATLAB's H x W x 3 array reaches h5py as 3 x W x H.
        image = np.asarray(file[ref]).T
    except (KeyError, ValueError, OSError, TypeError) as e:
        raise common.BadImageError(f"{origin}: image cannot be read: {e}") from None
    if image.ndim not in (2, 3) or min(image.shape[:2]) == 0:
        raise common.BadImageError(f"{origin}: not an image, array of shape {image.shape}")
    try:
        return common.to_rgb(image, origin)
    except common.DatasetError as e:
        raise common.BadImageError(str(e)) from None


def _find_cofw68(root: str) -> tuple[str, str, list[str]]:
    """Paths of the COFW test file, the COFW-68 boxes and the N points files (in IsT order)."""
    test_name = COFW_FILES["test"][0]
    found = common.find_files(root, (test_name, COFW68_BOXES))
    missing = [f"{name}: {hint}" for name, hint in ((test_name, _COFW_HINT),
                                                    (COFW68_BOXES, _COFW68_HINT))
               if name not in found]
    points_paths = []
    if test_name in found:
        file, refs, _, _ = _open_cofw(found[test_name], COFW_FILES["test"][1])
        file.close()
        names = [COFW68_POINTS.format(i + 1) for i in range(len(refs))]
        points = common.find_files(root, names)
        absent = [name for name in names if name not in points]
        if absent:
            missing.append(f"test_annotations/<i>_points.mat ({len(absent)} of {len(names)} "
                           f"files, e.g. {absent[:3]}): {_COFW68_HINT}")
        points_paths = [points.get(name) for name in names]
    if missing:
        raise common.missing_files_error(root, missing)
    return found[test_name], found[COFW68_BOXES], points_paths


def _load_cofw68_boxes(path: str, num_faces: int) -> np.ndarray:
    """(N, 4) ``x, y, w, h`` boxes of COFW-68 (MATLAB 1-based)."""
    mat = common.load_matlab_v5(path)
    if "bboxes" not in mat:
        raise common.DatasetError(f"{path}: no variable 'bboxes'")
    boxes = np.asarray(mat["bboxes"], dtype=np.float64)
    if boxes.shape != (num_faces, 4):
        raise common.DatasetError(f"{path}: bboxes has shape {boxes.shape}, expected "
                                  f"({num_faces}, 4): x, y, w, h of each COFW test face")
    _check_xywh(boxes, path, "bboxes")
    return boxes


def _load_cofw68_points(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(68, 2) ``Points`` (MATLAB 1-based x, y) and (68,) bool ``Occ`` (True = occluded)."""
    mat = common.load_matlab_v5(path)
    missing = [name for name in ("Points", "Occ") if name not in mat]
    if missing:
        raise common.DatasetError(f"{path}: missing variables {missing}")
    num = landmarks.W300.num_landmarks
    points = np.asarray(mat["Points"], dtype=np.float64)
    occluded = np.asarray(mat["Occ"]).reshape(-1)
    if points.shape != (num, 2):
        raise common.DatasetError(f"{path}: Points has shape {points.shape}, expected ({num}, 2)")
    if occluded.shape != (num,):
        raise common.DatasetError(f"{path}: Occ has {occluded.size} values, expected {num}")
    if not np.isfinite(points).all():
        raise common.DatasetError(f"{path}: non-finite value in Points")
    if not np.isin(occluded, (0, 1)).all():
        raise common.DatasetError(f"{path}: Occ holds values other than 0 and 1")
    return points, occluded == 1
