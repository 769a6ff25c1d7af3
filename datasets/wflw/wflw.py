"""WFLW: 98 landmarks on 7,500 train and 2,500 test faces from WIDER FACE, six test subsets.

The list files do not state a pixel origin; awing-jax reads their coordinates as 0-based pixel
centres (the convention of :mod:`awing_jax.landmarks`) and uses them unchanged, the detection
rectangle ``x_min y_min x_max y_max`` included. Every landmark is annotated, so ``visible`` is all
True.

Splits: ``train``, ``test`` and one ``test_<attribute>`` per attribute of :data:`ATTRIBUTES`. A
subset comes from its ``list_98pt_test_<attribute>.txt`` when present, checked against the test
file's flag; otherwise from the flag alone. A subset with no face (a user's own selection of
faces) is left out of the build with a printed note; ``train`` and ``test`` are required.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os

import numpy as np
import tensorflow_datasets as tfds

from awing_jax.landmarks import WFLW

from .. import common

# The flag columns of the attribute list files, in file order; subset splits are test_<name>.
ATTRIBUTES = ("largepose", "expression", "illumination", "makeup", "occlusion", "blur")
TRAIN_FILE = "list_98pt_rect_attr_train.txt"
TEST_FILE = "list_98pt_rect_attr_test.txt"
IMAGES_DIR = "WFLW_images"
HOMEPAGE = "https://wywu.github.io/projects/LAB/WFLW.html"
NUM_COORDINATES = 2 * WFLW.num_landmarks
FULL_LAYOUT = "196 coordinates, 4 box values, 6 attribute flags, image path"
SUBSET_LAYOUT = "196 coordinates, image path"


def subset_file(attribute: str) -> str:
    return f"list_98pt_test_{attribute}.txt"


@dataclasses.dataclass(frozen=True)
class Face:
    """One line of a WFLW list file.

    Attributes:
      line: 1-based line number in its file.
      landmarks: (98, 2) float64 photo pixels.
      box: (4,) ``x_min, y_min, x_max, y_max``; None in subset files.
      attributes: (6,) bool in :data:`ATTRIBUTES` order; None in subset files.
      image: the photo's path relative to ``WFLW_images/``.
    """

    line: int
    landmarks: np.ndarray
    box: np.ndarray | None
    attributes: np.ndarray | None
    image: str


def parse_line(line: str, num_values: int, where: str, layout: str) -> tuple[np.ndarray, str]:
    """Splits ``"v_1 ... v_n path"`` into (n,) float64 values and the path (spaces allowed)."""
    count = len(line.split())
    parts = line.split(maxsplit=num_values)
    # A number where the path should start means a value too many (or no path at all).
    if count <= num_values or common.is_number(parts[-1].split()[0]):
        raise common.DatasetError(
            f"{where}: {count} tokens where {num_values + 1} were expected ({layout})")
    return common.parse_numbers(parts[:-1], where), parts[-1]


def read_list_file(path: str, name: str, *, with_box_and_flags: bool) -> list[Face]:
    """Parses a list file: 207 tokens a line with box and flags, 197 (subset files) without.

    Args:
      path: the file.
      name: how errors and ``source`` name it (relative to the manual dir).
    """
    num_values = NUM_COORDINATES + (10 if with_box_and_flags else 0)
    layout = FULL_LAYOUT if with_box_and_flags else SUBSET_LAYOUT
    faces = []
    try:
        with open(path, encoding="utf-8") as lines:
            for number, raw in enumerate(lines, start=1):
                line = raw.strip()
                if not line:
                    continue
                where = f"{name}:{number}"
                values, image = parse_line(line, num_values, where, layout)
                box = flags = None
                if with_box_and_flags:
                    box = values[NUM_COORDINATES:NUM_COORDINATES + 4]
                    flags = values[NUM_COORDINATES + 4:]
                    if not np.isin(flags, (0.0, 1.0)).all():
                        raise common.DatasetError(
                            f"{where}: attribute flags {flags.tolist()} are not all 0 or 1")
                    flags = flags.astype(bool)
                landmarks = values[:NUM_COORDINATES].reshape(WFLW.num_landmarks, 2)
                faces.append(Face(number, landmarks, box, flags, image))
    except UnicodeDecodeError as e:
        raise common.DatasetError(f"{name}: not a text file ({e})") from None
    if not faces:
        raise common.DatasetError(f"{name}: no annotation lines")
    return faces


def match_subset(test: list[Face], subset: list[Face], attribute: str, test_name: str,
                 subset_name: str) -> list[Face]:
    """The test faces of one subset, after checking the subset file against the test file's flag.

    Each subset line must match an unused test line with the same image and landmarks, and the
    matched lines must be exactly those whose ``attribute`` flag is set.

    Returns:
      The flagged faces of ``test``, in test-file order.
    """
    by_image = collections.defaultdict(list)
    for face in test:
        by_image[face.image].append(face)
    matched: set[int] = set()
    for face in subset:
        candidates = [t.line for t in by_image[face.image] if t.line not in matched
                      and np.allclose(t.landmarks, face.landmarks, rtol=0.0, atol=1e-3)]
        if not candidates:
            raise common.DatasetError(
                f"{subset_name}:{face.line}: no face of {face.image} in {test_name} has these "
                "landmarks")
        matched.add(candidates[0])
    index = ATTRIBUTES.index(attribute)
    flagged = [face for face in test if face.attributes[index]]
    flagged_lines = {face.line for face in flagged}
    if matched != flagged_lines:
        raise common.DatasetError(
            f"{subset_name} ({len(matched)} faces) disagrees with the {attribute} flag of "
            f"{test_name} ({len(flagged)} faces): flagged but absent, lines "
            f"{sorted(flagged_lines - matched)[:5]}; present but not flagged, lines "
            f"{sorted(matched - flagged_lines)[:5]}. Remove the list_98pt_test_*.txt files to "
            "build the subsets from the flags alone.")
    return flagged


class Wflw(common.FaceBuilder):
    """WFLW, 98 landmarks, with the six attribute subsets of the test set."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download from {HOMEPAGE} (Google Drive / Baidu links on that page) and extract in the manual
    directory (any nesting depth is fine; the files are searched for):
      - WFLW_images.tar.gz -> {IMAGES_DIR}/<k>--<Event>/<name>.jpg
      - WFLW_annotations.tar.gz -> WFLW_annotations/list_98pt_rect_attr_train_test/{TRAIN_FILE}
        and {TEST_FILE}; optional WFLW_annotations/list_98pt_test/list_98pt_test_<subset>.txt
        (subset splits come from the test file's attribute flags when these are absent).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        extra = {"attributes": tfds.features.Tensor(shape=(len(ATTRIBUTES),), dtype=np.bool_)}
        return tfds.core.DatasetInfo(
            builder=self,
            description="WFLW face crops with 98 landmarks and six attribute flags "
                        f"({', '.join(ATTRIBUTES)}).",
            features=common.face_features(WFLW.num_landmarks, self.image_size, extra),
            homepage=HOMEPAGE,
        )

    def _split_generators(self, dl_manager):
        root = common.manual_dir(dl_manager)
        found = common.find_files(
            root, [TRAIN_FILE, TEST_FILE, *(subset_file(a) for a in ATTRIBUTES)])
        images = common.find_directory(root, IMAGES_DIR)
        annotations_hint = f"from WFLW_annotations.tar.gz ({HOMEPAGE}), anywhere in the manual dir"
        missing = [f"{name}: {annotations_hint}" for name in (TRAIN_FILE, TEST_FILE)
                   if name not in found]
        if images is None:
            missing.append(f"{IMAGES_DIR}/: the folder extracted from WFLW_images.tar.gz "
                           f"({HOMEPAGE})")
        if missing:
            raise common.missing_files_error(root, missing)

        def name_of(path: str) -> str:
            return os.path.relpath(path, root)

        train_name, test_name = name_of(found[TRAIN_FILE]), name_of(found[TEST_FILE])
        train = read_list_file(found[TRAIN_FILE], train_name, with_box_and_flags=True)
        test = read_list_file(found[TEST_FILE], test_name, with_box_and_flags=True)
        splits = {
            "train": self._generate_examples("train", train_name, train, images),
            "test": self._generate_examples("test", test_name, test, images),
        }
        for index, attribute in enumerate(ATTRIBUTES):
            path = found.get(subset_file(attribute))
            if path is None:
                faces = [face for face in test if face.attributes[index]]
            else:
                subset = read_list_file(path, name_of(path), with_box_and_flags=False)
                faces = match_subset(test, subset, attribute, test_name, name_of(path))
            split = f"test_{attribute}"
            splits[split] = self._generate_examples(split, test_name, faces, images)
        why = {f"test_{attribute}": f"no face of {test_name} has the {attribute} flag"
               for attribute in ATTRIBUTES}
        return self.non_empty_splits(splits, required=("train", "test"), why=why)

    def _generate_examples(self, split: str, annotation: str, faces: list[Face], images: str):
        """Yields ``("<list file>:<line>", example)``: the line keys a face, not its photo."""
        reader = self.photo_reader(split)
        visible = np.ones(WFLW.num_landmarks, dtype=bool)
        for face in faces:
            where = f"{annotation}:{face.line}"
            image = reader.read(os.path.join(images, face.image), where)
            if image is None:
                continue
            example = self.checked_example(split, where, functools.partial(
                common.make_example, image, face.landmarks, visible, face.box, where,
                image_size=self.image_size, extra={"attributes": face.attributes}))
            if example is not None:
                yield where, example
        reader.report("wflw", split)
