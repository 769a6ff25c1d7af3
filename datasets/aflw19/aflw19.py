"""AFLW-19: AFLW faces with the 19-point annotation of ``AFLWinfo_release.mat``.

Splits follow the file's ``ra`` permutation: its first ``NUM_TRAIN`` (20,000) entries are ``train``,
the rest (4,386) ``test_full``; ``test_frontal`` is the part of ``test_full`` whose 19 points are
all visible.

Coordinates: the file is MATLAB's, taken to hold 1-based pixel coordinates, so ``MATLAB_ORIGIN`` is
subtracted from points and box (not checked against the photos). ``visible`` is ``mask_new``.
Points marked not visible still carry coordinates in the file: they are stored as given, mapped into
the crop like the others, with ``visible`` False, so a metric can use all 19 points or only the
visible ones. ``box`` is the file's ``bbox``, whose sqrt(w * h) normalises the AFLW error.
"""

from __future__ import annotations

import functools
import os
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from awing_jax import crop, landmarks

from .. import common

ANNOTATION_FILE = "AFLWinfo_release.mat"
IMAGE_FOLDER = "flickr"
MATLAB_ORIGIN = 1.0
# The first NUM_TRAIN entries of ``ra`` are the training faces (the AFLW-19 protocol).
NUM_TRAIN = 20000

_ANNOTATION_HINT = ("the 19-point annotation of Zhu et al. (CVPR 2016), from "
                    "http://mmlab.ie.cuhk.edu.hk/projects/compositional.html, "
                    "anywhere under the manual dir")
_IMAGE_HINT = ("folder 'flickr' with sub-folders 0/, 2/, 3/ of imageNNNNN.jpg from the AFLW "
               "release (https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/"
               "aflw/), anywhere under the manual dir")

_CITATION = """@inproceedings{koestinger2011aflw,
  title={Annotated facial landmarks in the wild: A large-scale, real-world database for facial
         landmark localization},
  author={Koestinger, Martin and Wohlhart, Paul and Roth, Peter M. and Bischof, Horst},
  booktitle={ICCV Workshops},
  year={2011}
}
@inproceedings{zhu2016ccl,
  title={Unconstrained face alignment via cascaded compositional learning},
  author={Zhu, Shizhan and Li, Cheng and Loy, Chen Change and Tang, Xiaoou},
  booktitle={CVPR},
  year={2016}
}"""


class Aflw19(common.FaceBuilder):
    """AFLW-19 faces, cropped around the annotation's face box."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Put anywhere under the manual dir (sub-folders are searched):
      {ANNOTATION_FILE}  ({_ANNOTATION_HINT})
      flickr/0/, flickr/2/, flickr/3/  (the AFLW images, as in the AFLW release's aflw/data/flickr)
    """

    def __init__(self, *, num_train: int = NUM_TRAIN, **kwargs):
        """
        Args:
          num_train: how many leading entries of ``ra`` are training faces; 20,000 except for
            small test fixtures.
          **kwargs: for :class:`common.FaceBuilder` (``image_size``, ``skip_missing_images``) and
            TFDS (``data_dir``, ``file_format``, ...).
        """
        self.num_train = num_train
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=common.face_features(landmarks.AFLW19.num_landmarks, self.image_size),
            homepage="https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/aflw/",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        root = common.manual_dir(dl_manager)
        found = common.find_files(root, [ANNOTATION_FILE])
        image_dir = common.find_directory(root, IMAGE_FOLDER)
        missing = [f"{name}: {hint}" for name, hint, absent in (
            (ANNOTATION_FILE, _ANNOTATION_HINT, ANNOTATION_FILE not in found),
            (f"{IMAGE_FOLDER}/", _IMAGE_HINT, image_dir is None)) if absent]
        if missing:
            raise common.missing_files_error(root, missing)
        annotation = _Annotation(found[ANNOTATION_FILE])
        if not 0 < self.num_train < annotation.num_faces:
            raise common.DatasetError(
                f"{annotation.path}: {annotation.num_faces} faces, cannot hold num_train="
                f"{self.num_train} training faces and a non-empty test set")
        train, test = annotation.order[:self.num_train], annotation.order[self.num_train:]
        frontal = test[annotation.visible[test].all(axis=1)]
        return self.non_empty_splits(
            {split: self._generate_examples(split, root, image_dir, annotation, rows)
             for split, rows in (("train", train), ("test_full", test), ("test_frontal", frontal))},
            required=("train", "test_full"),
            why={"test_frontal": "no test face has all 19 points visible"})

    def _generate_examples(self, split: str, root: str, image_dir: str,
                           annotation: _Annotation, rows: np.ndarray):
        source = os.path.relpath(annotation.path, root)
        photos = self.photo_reader(split)
        for row in rows:
            name = annotation.names[row]
            where = f"{source}#{row}"
            reference = f"{annotation.path} entry {row} (nameList {name!r})"
            image = photos.read(os.path.join(image_dir, name), reference)
            if image is None:
                continue
            points = annotation.landmarks[row]
            example = self.checked_example(split, where, functools.partial(
                common.make_example, image, points, annotation.visible[row],
                annotation.boxes[row], reference, image_size=self.image_size))
            if example is None:
                continue
            example["source"] = where
            # make_example zeroes points that are not visible; AFLW keeps the file's coordinates.
            to_crop = crop.invert(example["to_original"])
            example["landmarks"] = crop.apply(to_crop, points).astype(np.float32)
            yield int(row), example
        photos.report(self.name, split)


class _Annotation:
    """The checked contents of ``AFLWinfo_release.mat``, one row per face (0-based coordinates).

    Attributes:
      path: the file.
      num_faces: N.
      names: N image paths relative to the ``flickr`` folder (``nameList``).
      landmarks: (N, 19, 2) float64 x, y.
      visible: (N, 19) bool (``mask_new``).
      boxes: (N, 4) float64 ``x1, y1, x2, y2`` (``bbox`` is left, right, top, bottom).
      order: (N,) 0-based face rows in the order of ``ra``.
    """

    def __init__(self, path: str):
        self.path = path
        mat = common.load_matlab_v5(path)
        variables = ("bbox", "data", "mask_new", "nameList", "ra")
        absent = [name for name in variables if name not in mat]
        if absent:
            raise common.DatasetError(f"{path}: missing variables {absent}; expected {variables}")
        num = landmarks.AFLW19.num_landmarks
        data = self._matrix(mat, "data", 2 * num)
        n = self.num_faces = data.shape[0]
        mask = self._matrix(mat, "mask_new", num, n)
        bbox = self._matrix(mat, "bbox", 4, n)
        names = np.asarray(mat["nameList"], dtype=object).reshape(-1)
        ra = np.asarray(mat["ra"], dtype=np.float64).reshape(-1)
        if names.size != n or ra.size != n:
            raise common.DatasetError(f"{path}: nameList has {names.size} and ra {ra.size} "
                                      f"entries, expected one per face of data ({n})")
        common.raise_first_bad(~np.isfinite(data).all(axis=1), path, "non-finite value in data")
        common.raise_first_bad(~np.isin(mask, (0, 1)).all(axis=1), path,
                               "mask_new holds a value other than 0 and 1")
        left, right, top, bottom = bbox.T
        common.raise_first_bad(~(np.isfinite(bbox).all(axis=1) & (left < right) & (top < bottom)),
                               path, "bbox [left, right, top, bottom] not finite with "
                               "left < right and top < bottom")
        if not np.array_equal(np.sort(ra), np.arange(1, n + 1)):
            raise common.DatasetError(f"{path}: ra is not a permutation of 1..{n}")
        self.names = [self._name(cell, row) for row, cell in enumerate(names)]
        self.landmarks = np.stack([data[:, :num], data[:, num:]], axis=-1) - MATLAB_ORIGIN
        self.visible = mask == 1
        self.boxes = np.stack([left, top, right, bottom], axis=-1) - MATLAB_ORIGIN
        self.order = ra.astype(np.int64) - 1

    def _matrix(self, mat: dict, name: str, columns: int, rows: int | None = None) -> np.ndarray:
        try:
            value = np.asarray(mat[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise common.DatasetError(f"{self.path}: {name} is not a numeric matrix") from None
        if value.ndim != 2 or value.shape[1] != columns or (rows is not None
                                                            and value.shape[0] != rows):
            expected = f"({'N' if rows is None else rows}, {columns})"
            raise common.DatasetError(f"{self.path}: {name} has shape {value.shape}, "
                                      f"expected {expected}")
        return value

    def _name(self, cell, row: int) -> str:
        """One ``nameList`` cell, e.g. ``3/image00035.jpg``, as a relative path."""
        text = np.asarray(cell).reshape(-1)
        if text.size != 1 or not isinstance(text[0], str) or not text[0].strip():
            raise common.DatasetError(f"{self.path}: nameList entry {row} is not an image path: "
                                      f"{cell!r}")
        name = text[0].strip().replace("\\", "/")
        if os.path.isabs(name) or ".." in name.split("/"):
            raise common.DatasetError(f"{self.path}: nameList entry {row} leaves the image "
                                      f"folder: {name!r}")
        return name
