"""300W: 68 landmarks on AFW, HELEN, LFPW and iBUG, plus the 600-face private test set.

Splits: ``train`` = afw + helen/trainset + lfpw/trainset; ``common`` = helen/testset +
lfpw/testset; ``challenge`` = ibug; ``full`` = common + challenge; ``private`` = 300W/01_Indoor +
02_Outdoor, only when those folders are in the manual dir.

The ``.pts`` files and the ``Bounding Boxes/bounding_boxes_*.mat`` boxes are 1-based (MATLAB);
both are shifted by -1 to 0-based pixel centres. The face box is a builder config: ``detector``
(the default) takes ``bb_detector``, ``ground_truth`` takes ``bb_ground_truth``. A face without an
entry in a box file (the private set has none; a box file may not be there) gets its landmarks'
extent as box; ``box_source`` records which box each face got and the counts are printed.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import tensorflow_datasets as tfds

from awing_jax import crop
from awing_jax.landmarks import W300 as SCHEME

from .. import common

HOMEPAGE = "https://ibug.doc.ic.ac.uk/resources/300-W/"
SPLIT_SOURCES = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenge": ("ibug",),
    "full": ("helen/testset", "lfpw/testset", "ibug"),
}
# The sources of the four public splits, each with a bounding_boxes_<source>.mat.
PUBLIC_SOURCES = ("afw", "helen/trainset", "lfpw/trainset", "helen/testset", "lfpw/testset", "ibug")
PRIVATE_SOURCES = ("01_Indoor", "02_Outdoor")
IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")
LANDMARKS_BOX = "landmarks"


def box_file(source: str) -> str:
    """``"helen/trainset"`` -> ``"bounding_boxes_helen_trainset.mat"``."""
    return f"bounding_boxes_{source.replace('/', '_')}.mat"


def image_key(file_name: str) -> str:
    """How box entries meet images: the stem without spaces (``image_092 _01.jpg``)."""
    return os.path.splitext(os.path.basename(file_name))[0].replace(" ", "")


def read_pts(path: str, name: str, num_points: int = SCHEME.num_landmarks) -> np.ndarray:
    """Reads a ``.pts`` file: ``version: 1`` / ``n_points: N`` / ``{`` / N lines ``x y`` / ``}``.

    Returns:
      (N, 2) float64 as written (1-based for 300W).
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = [(number, line.strip()) for number, line in enumerate(f, start=1)
                     if line.strip()]
    except UnicodeDecodeError as e:
        raise common.DatasetError(f"{name}: not a text file ({e})") from None
    opening = next((i for i, (_, line) in enumerate(lines) if line == "{"), None)
    if opening is None:
        raise common.DatasetError(f"{name}: no '{{' line opening the points")
    header = {}
    for number, line in lines[:opening]:
        key, colon, value = line.partition(":")
        if not colon:
            raise common.DatasetError(f"{name}:{number}: expected a 'key: value' header line, "
                                      f"found {line!r}")
        header[key.strip()] = (number, value.strip())
    if "n_points" not in header:
        raise common.DatasetError(f"{name}: no n_points header line")
    number, value = header["n_points"]
    if not value.isdigit():
        raise common.DatasetError(f"{name}:{number}: n_points {value!r} is not an integer")
    if int(value) != num_points:
        raise common.DatasetError(
            f"{name}:{number}: n_points is {value}, expected {num_points} for 300W")
    body = lines[opening + 1:]
    if not body or body[-1][1] != "}":
        raise common.DatasetError(f"{name}: the points are not closed by a '}}' line")
    body = body[:-1]
    if len(body) != num_points:
        raise common.DatasetError(
            f"{name}: {len(body)} point lines between '{{' and '}}', n_points says {num_points}")
    points = []
    for number, line in body:
        tokens = line.split()
        if len(tokens) != 2:
            raise common.DatasetError(f"{name}:{number}: expected 'x y', found {line!r}")
        points.append(common.parse_numbers(tokens, f"{name}:{number}"))
    return np.stack(points)


def read_box_file(path: str, name: str, field: str) -> dict[str, np.ndarray]:
    """Reads ``bounding_boxes`` (1xN cell of structs) of a 300W box file.

    Args:
      field: ``"bb_detector"`` or ``"bb_ground_truth"``.

    Returns:
      :func:`image_key` of ``imgName`` -> (4,) ``x1, y1, x2, y2`` as written (1-based).
    """
    contents = common.load_matlab_v5(path)
    if "bounding_boxes" not in contents:
        raise common.DatasetError(f"{name}: no variable 'bounding_boxes'")
    cells = contents["bounding_boxes"]
    boxes: dict[str, np.ndarray] = {}
    for index, cell in enumerate(np.asarray(cells).ravel()):
        where = f"{name}#{index}"
        try:
            entry = np.asarray(cell).ravel()[0]
            image = str(np.asarray(entry["imgName"]).ravel()[0])
            box = np.asarray(entry[field], dtype=np.float64).ravel()
        except (IndexError, KeyError, TypeError, ValueError) as e:
            raise common.DatasetError(
                f"{where}: not a struct with fields imgName and {field} ({e})") from None
        if box.shape != (4,) or not np.isfinite(box).all():
            raise common.DatasetError(f"{where}: {field} of {image} is {box.tolist()}, not 4 "
                                      "finite numbers")
        key = image_key(image)
        if key in boxes:
            raise common.DatasetError(f"{where}: a second entry for {image}")
        boxes[key] = box
    return boxes


def find_image(pts_path: str) -> str:
    """The photo beside a ``.pts`` file: same stem, .jpg or .png (the .jpg name if neither)."""
    stem = os.path.splitext(pts_path)[0]
    for extension in IMAGE_EXTENSIONS:
        if os.path.isfile(stem + extension):
            return stem + extension
    return stem + ".jpg"


def source_folder(root: str, source: str) -> str | None:
    """The folder of ``source`` (e.g. ``"helen/trainset"``) holding .pts files, or None."""
    top, _, rest = source.partition("/")
    found = common.find_directory(root, top)
    if found is None:
        return None
    folder = os.path.join(found, rest) if rest else found
    if not os.path.isdir(folder) or not any(n.endswith(".pts") for n in os.listdir(folder)):
        return None
    return folder


def read_faces(root: str, folder: str) -> list[tuple[str, np.ndarray, str]]:
    """Every face of a folder: (.pts path relative to ``root``, (68, 2) 0-based points, photo)."""
    faces = []
    for file_name in sorted(os.listdir(folder)):
        if file_name.endswith(".pts"):
            path = os.path.join(folder, file_name)
            name = os.path.relpath(path, root)
            faces.append((name, read_pts(path, name) - 1.0, find_image(path)))
    return faces


class W300(common.FaceBuilder):
    """300W, 68 landmarks: train / common / challenge / full (/ private)."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = (
        tfds.core.BuilderConfig(
            name="detector", description="Face box: bb_detector of the 300W box files."),
        tfds.core.BuilderConfig(
            name="ground_truth", description="Face box: bb_ground_truth of the 300W box files."),
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download from {HOMEPAGE} and extract in the manual directory (folders are searched for):
      - afw.zip -> afw/*.jpg + *.pts
      - helen.zip -> helen/trainset/, helen/testset/ (*.jpg + *.pts)
      - lfpw.zip -> lfpw/trainset/, lfpw/testset/ (*.png + *.pts)
      - ibug.zip -> ibug/*.jpg + *.pts
      - bounding_boxes.zip -> Bounding Boxes/bounding_boxes_<source>.mat (optional: without it the
        landmarks' extent is the face box)
      - optional, the private test set 300w.zip -> 300W/01_Indoor/, 300W/02_Outdoor/ (*.png + *.pts)
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="300W face crops with 68 landmarks. box_source: 'detector', "
                        "'ground_truth' or 'landmarks' (the landmarks' extent, no box entry).",
            features=common.face_features(SCHEME.num_landmarks, self.image_size,
                                          {"box_source": tfds.features.Text()}),
            homepage=HOMEPAGE,
        )

    def _split_generators(self, dl_manager):
        root = common.manual_dir(dl_manager)
        folders = {source: source_folder(root, source)
                   for source in (*PUBLIC_SOURCES, *PRIVATE_SOURCES)}
        missing = [f"{source}/ (images and .pts files): from {source.split('/')[0]}.zip, {HOMEPAGE}"
                   for source in PUBLIC_SOURCES if folders[source] is None]
        private = [source for source in PRIVATE_SOURCES if folders[source] is not None]
        if private and len(private) < len(PRIVATE_SOURCES):
            missing += [f"300W/{source}/ (images and .pts files): from 300w.zip, {HOMEPAGE} "
                        "(the private set needs both folders)"
                        for source in PRIVATE_SOURCES if source not in private]
        if missing:
            raise common.missing_files_error(root, missing)

        box_paths = common.find_files(root, [box_file(source) for source in PUBLIC_SOURCES])
        boxes = {}
        for source in PUBLIC_SOURCES:
            path = box_paths.get(box_file(source))
            if path is None:
                print(f"w300: no {box_file(source)} under {root}: the {source} faces get their "
                      "landmarks' extent as box")
            else:
                boxes[source] = read_box_file(path, os.path.relpath(path, root),
                                              f"bb_{self.builder_config.name}")
        faces = {source: read_faces(root, folder) for source, folder in folders.items()
                 if folder is not None}

        split_sources = dict(SPLIT_SOURCES, **({"private": PRIVATE_SOURCES} if private else {}))
        return self.non_empty_splits(
            {split: self._generate_examples(split, [(faces[s], boxes.get(s)) for s in sources])
             for split, sources in split_sources.items()}, required=("train",))

    def _generate_examples(self, split: str, sources):
        """Yields ``("<.pts file>", example)`` for ``sources``: [(faces, box table or None)]."""
        reader = self.photo_reader(split)
        visible = np.ones(SCHEME.num_landmarks, dtype=bool)
        total = from_landmarks = 0
        for faces, boxes in sources:
            for name, landmarks, image_path in faces:
                image = reader.read(image_path, name)
                if image is None:
                    continue
                box = None if boxes is None else boxes.get(image_key(image_path))
                if box is None:
                    box, box_source = crop.landmarks_box(landmarks), LANDMARKS_BOX
                else:
                    box, box_source = box - 1.0, self.builder_config.name
                example = self.checked_example(split, name, functools.partial(
                    common.make_example, image, landmarks, visible, box, name,
                    image_size=self.image_size, extra={"box_source": box_source}))
                if example is None:
                    continue
                total += 1
                from_landmarks += box_source == LANDMARKS_BOX
                yield name, example
        if from_landmarks:
            print(f"w300 {split}: {from_landmarks} of {total} faces have no box entry; their box "
                  "is their landmarks' extent")
        reader.report("w300", split)

