"""WFLW and 300W builders and the build CLI, on tiny trees written in the real file formats."""

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from awing_jax import crop
from datasets import build
from datasets.common import DatasetError
from datasets.w300 import w300
from datasets.wflw import wflw

SIZE = 64
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO_HEIGHT, PHOTO_WIDTH = 70, 90


def photo_pixels(colour, grey, x, y):
    """The photo's (R, G, B) at photo pixel coordinates (x, y): ramps along x, y and x + y from
    ``colour``, or one grey ramp. Linear, so bilinear resampling reproduces it exactly."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if grey:
        value = colour[0] / 2 + 0.8 * (x + y)
        return np.stack([value] * 3, axis=-1)
    return np.stack([colour[0] / 2 + 1.2 * x, colour[1] / 2 + 1.5 * y,
                     colour[2] / 2 + 0.6 * (x + y)], axis=-1)


def write_photo(path, colour, *, grey=False):
    """A photo of :func:`photo_pixels`, RGB or stored as 1 grey channel."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    y, x = np.mgrid[0:PHOTO_HEIGHT, 0:PHOTO_WIDTH]
    pixels = np.round(photo_pixels(colour, grey, x, y)).astype(np.uint8)
    assert cv2.imwrite(path, pixels[..., 0] if grey else pixels[..., ::-1])


def random_face(rng, num_points):
    """(L, 2) points inside the photo, and an integer box around them."""
    centre = rng.uniform([35, 30], [55, 40])
    points = centre + rng.uniform(-18, 18, size=(num_points, 2))
    box = np.concatenate([np.floor(points.min(0)) - 2, np.ceil(points.max(0)) + 2])
    return np.round(points, 3), box


def read_split(name, data_dir, split):
    source = tfds.data_source(name, data_dir=data_dir, split=split)
    return [source[i] for i in range(len(source))]


def in_photo(example):
    """The example's landmarks and box mapped back to photo pixels."""
    to_original = example["to_original"]
    return (crop.apply(to_original, example["landmarks"]),
            crop.apply(to_original, example["box"].reshape(2, 2)).reshape(4))


def check_pixels(example, colour, grey):
    """Every pixel of the stored crop against the photo at the point ``to_original`` maps it to:
    the photo's ramps inside the photo, black outside (a crop 2.5 times the box reaches past the
    photo's edges). Pixels within a few photo pixels of an edge are skipped (interpolation
    across the edge, JPEG ringing)."""
    image = example["image"].astype(np.float64)
    assert image.shape == (SIZE, SIZE, 3) and example["image"].dtype == np.uint8
    v, u = np.mgrid[0:SIZE, 0:SIZE]
    x, y = np.moveaxis(crop.apply(example["to_original"], np.stack([u, v], axis=-1)), -1, 0)
    margin = 4.0
    inside = (x > margin) & (x < PHOTO_WIDTH - 1 - margin) & (y > margin) & (
        y < PHOTO_HEIGHT - 1 - margin)
    far = 2 * margin  # JPEG rings further into the flat black
    outside = (x < -far) | (x > PHOTO_WIDTH - 1 + far) | (y < -far) | (y > PHOTO_HEIGHT - 1 + far)
    assert inside.sum() > SIZE * SIZE / 4 and outside.sum() > SIZE
    error = np.abs(image - photo_pixels(colour, grey, x, y))[inside]
    assert error.max() <= 12 and error.mean() <= 1.5, (error.max(), error.mean())
    assert image[outside].max() <= 20 and image[outside].mean() <= 2
    if grey:
        assert np.abs(image - image[..., :1]).max() <= 2


def prepare(builder_class, manual_dir, data_dir, **kwargs):
    builder = builder_class(data_dir=str(data_dir), file_format="array_record", image_size=SIZE,
                            **kwargs)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


# --------------------------------------------------------------------------------------------------
# WFLW

WFLW_FLAGS = {  # test line -> pose, expression, illumination, make-up, occlusion, blur
    1: (1, 0, 0, 0, 1, 0), 2: (0, 1, 1, 0, 0, 1), 3: (1, 0, 0, 1, 0, 0), 4: (0, 0, 0, 0, 0, 0),
}
WFLW_PHOTOS = {  # photo -> (colour, grey, [(split, line), ...]): two faces share a photo
    "0--Parade/0_Parade_marchingband_1_5.jpg": ((200, 40, 90), False, [("train", 1), ("train", 2)]),
    "1--Handshaking/1_Handshaking 7.jpg": ((120, 0, 0), True, [("train", 3)]),
    "2--Demonstration/2_Demonstration_3.jpg": ((30, 160, 220), False, [("test", 1), ("test", 2)]),
    "3--Riot/3_Riot_9.jpg": ((90, 0, 0), True, [("test", 3)]),
    "4--Dancing/4_Dancing_2.jpg": ((10, 200, 30), False, [("test", 4)]),
}
WFLW_ANNOTATIONS = "WFLW_annotations/WFLW_annotations"  # re-packaged: one level deeper


def write_wflw(root, *, subset_files=True):
    """Writes a WFLW tree; returns {(split, line): (landmarks, box, flags, photo)}."""
    rng = np.random.default_rng(0)
    faces = {}
    for photo, (colour, grey, lines) in WFLW_PHOTOS.items():
        write_photo(os.path.join(root, "WFLW_images", photo), colour, grey=grey)
        for split, line in lines:
            points, box = random_face(rng, 98)
            flags = WFLW_FLAGS[line] if split == "test" else (0,) * 6
            faces[split, line] = points, box, flags, photo
    for split in ("train", "test"):
        lines = []
        for line in sorted(line for s, line in faces if s == split):
            points, box, flags, photo = faces[split, line]
            lines.append(" ".join([*(f"{v:.6f}" for v in points.ravel()),
                                   *(str(int(v)) for v in box), *map(str, flags), photo]))
        path = os.path.join(root, WFLW_ANNOTATIONS, "list_98pt_rect_attr_train_test",
                            f"list_98pt_rect_attr_{split}.txt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
    if subset_files:
        for index, attribute in enumerate(wflw.ATTRIBUTES):
            # Newest first: matching is by photo and landmarks, not by order.
            lines = [" ".join([*(f"{v:.6f}" for v in faces["test", line][0].ravel()),
                               faces["test", line][3]])
                     for line in sorted(WFLW_FLAGS, reverse=True) if WFLW_FLAGS[line][index]]
            write_subset(root, attribute, lines)
    return faces


def write_subset(root, attribute, lines):
    path = os.path.join(root, WFLW_ANNOTATIONS, "list_98pt_test", wflw.subset_file(attribute))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def annotation_path(root, split):
    return os.path.join(root, WFLW_ANNOTATIONS, "list_98pt_rect_attr_train_test",
                        f"list_98pt_rect_attr_{split}.txt")


def edit_line(path, line, edit):
    with open(path) as f:
        lines = f.read().splitlines()
    lines[line - 1] = edit(lines[line - 1])
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def check_wflw_subsets(data_dir):
    for index, attribute in enumerate(wflw.ATTRIBUTES):
        sources = [e["source"].decode() for e in read_split("wflw", data_dir, f"test_{attribute}")]
        expected = [line for line, flags in sorted(WFLW_FLAGS.items()) if flags[index]]
        assert sorted(int(s.rsplit(":", 1)[1]) for s in sources) == expected  # TFDS shuffles
        assert all(s.startswith(os.path.join(WFLW_ANNOTATIONS, "list_98pt_rect_attr_train_test",
                                             "list_98pt_rect_attr_test.txt")) for s in sources)


@pytest.fixture(scope="module")
def wflw_built(tmp_path_factory):
    manual = tmp_path_factory.mktemp("wflw_manual")
    faces = write_wflw(str(manual))
    data_dir = tmp_path_factory.mktemp("wflw_data")
    build.build("wflw", manual_dir=str(manual), data_dir=str(data_dir), image_size=SIZE)
    return faces, data_dir


def test_wflw_examples_match_the_annotations(wflw_built):
    faces, data_dir = wflw_built
    seen = set()
    for split in ("train", "test"):
        examples = read_split("wflw", data_dir, split)
        assert len(examples) == sum(s == split for s, _ in faces)
        for example in examples:
            name, line = example["source"].decode().rsplit(":", 1)
            assert name.endswith(f"list_98pt_rect_attr_{split}.txt")
            points, box, flags, photo = faces[split, int(line)]
            landmarks, stored_box = in_photo(example)
            np.testing.assert_allclose(landmarks, points, atol=1e-3)
            np.testing.assert_allclose(stored_box, box, atol=1e-3)
            np.testing.assert_array_equal(example["attributes"], np.array(flags, bool))
            assert example["visible"].all()
            colour, grey, _ = WFLW_PHOTOS[photo]
            check_pixels(example, colour, grey)
            seen.add((split, int(line)))
    assert seen == set(faces)


def test_wflw_subset_splits_follow_the_subset_files(wflw_built):
    check_wflw_subsets(wflw_built[1])


def test_wflw_subset_file_disagreeing_with_flags(tmp_path):
    faces = write_wflw(str(tmp_path / "manual"))
    lines = [" ".join([*(f"{v:.6f}" for v in faces["test", line][0].ravel()),
                       faces["test", line][3]]) for line in (1, 4)]  # 4 is not flagged
    write_subset(str(tmp_path / "manual"), "occlusion", lines)
    with pytest.raises(DatasetError, match=r"list_98pt_test_occlusion.txt .*occlusion flag"):
        prepare(wflw.Wflw, tmp_path / "manual", tmp_path / "data")
    write_subset(str(tmp_path / "manual"), "occlusion", [lines[0].replace("2--", "9--")])
    with pytest.raises(DatasetError, match=r"list_98pt_test_occlusion.txt:1: no face"):
        prepare(wflw.Wflw, tmp_path / "manual", tmp_path / "data")


@pytest.mark.parametrize("edit, message", [
    (lambda line: "abc " + line.split(" ", 1)[1], r"train.txt:2: token 1 'abc' is not a finite"),
    (lambda line: line.split(" ", 1)[1], r"train.txt:2: 206 tokens where 207"),
    (lambda line: "1.0 " + line, r"train.txt:2: 208 tokens where 207"),
    (lambda line: line.replace(" 0 0 0 0 0 0 ", " 0 0 2 0 0 0 "), r"train.txt:2: attribute flags"),
])
def test_wflw_malformed_lines(tmp_path, edit, message):
    write_wflw(str(tmp_path / "manual"))
    edit_line(annotation_path(str(tmp_path / "manual"), "train"), 2, edit)
    with pytest.raises(DatasetError, match=message):
        prepare(wflw.Wflw, tmp_path / "manual", tmp_path / "data")


def test_wflw_missing_and_unreadable_images(tmp_path, capsys):
    manual = str(tmp_path / "manual")
    write_wflw(manual)
    photo = os.path.join(manual, "WFLW_images", "4--Dancing", "4_Dancing_2.jpg")
    os.remove(photo)
    with pytest.raises(DatasetError, match=r"rect_attr_test.txt:4: .*4_Dancing_2.jpg: image file "
                                           "not found"):
        prepare(wflw.Wflw, manual, tmp_path / "data")
    builder = prepare(wflw.Wflw, manual, tmp_path / "data", skip_missing_images=True)
    assert builder.info.splits["test"].num_examples == 3
    assert builder.info.splits["train"].num_examples == 3
    assert "wflw test: skipped 1 faces" in capsys.readouterr().out
    with open(photo, "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"test.txt:4: .*4_Dancing_2.jpg: .*cannot be decoded"):
        prepare(wflw.Wflw, manual, tmp_path / "data2")


def test_wflw_missing_manual_files(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "readme.txt").write_text("nothing here")
    with pytest.raises(DatasetError) as error:
        prepare(wflw.Wflw, manual, tmp_path / "data")
    for name in ("list_98pt_rect_attr_train.txt", "list_98pt_rect_attr_test.txt", "WFLW_images"):
        assert name in str(error.value)


def test_build_cli(tmp_path):
    manual, data_dir = str(tmp_path / "manual"), str(tmp_path / "data")
    write_wflw(manual, subset_files=False)  # subsets from the attribute flags
    command = [sys.executable, "-m", "datasets.build", "wflw", "--manual_dir", manual,
               "--data_dir", data_dir, "--image_size", str(SIZE)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert os.path.join(data_dir, "wflw") in done.stdout
    assert "train: 3 faces" in done.stdout and "test_blur: 1 faces" in done.stdout
    check_wflw_subsets(data_dir)

    empty = tmp_path / "empty"
    empty.mkdir()
    command[command.index(manual)] = str(empty)
    command[command.index(data_dir)] = str(tmp_path / "data2")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "list_98pt_rect_attr_train.txt" in done.stderr and "WFLW_images" in done.stderr


# --------------------------------------------------------------------------------------------------
# 300W

W300_PHOTOS = {  # .pts path -> (photo extension, colour, grey, split source)
    "afw/1051618982_1": (".jpg", (200, 40, 90), False),
    "afw/1051618982_2": (".jpg", (200, 40, 90), False),
    "helen/trainset/100032540_1": (".jpg", (20, 90, 200), False),
    "lfpw/trainset/image_0001": (".png", (60, 220, 10), False),
    "helen/testset/296814969_3": (".jpg", (150, 0, 0), True),
    "lfpw/testset/image_0002": (".png", (80, 0, 0), True),
    "ibug/image_092 _01": (".jpg", (240, 200, 20), False),
    "ibug/image_003_1": (".jpg", (5, 100, 100), False),  # no entry in the box file
    "300W/01_Indoor/indoor_001": (".png", (100, 100, 250), False),
    "300W/02_Outdoor/outdoor_001": (".png", (50, 50, 50), False),
}
W300_SPLITS = {
    "train": ("afw/", "helen/trainset/", "lfpw/trainset/"),
    "common": ("helen/testset/", "lfpw/testset/"),
    "challenge": ("ibug/",),
    "full": ("helen/testset/", "lfpw/testset/", "ibug/"),
    "private": ("300W/01_Indoor/", "300W/02_Outdoor/"),
}


def write_pts(path, points, n_points=None):
    n_points = len(points) if n_points is None else n_points
    body = "".join(f"{x:.3f} {y:.3f}\n" for x, y in points)
    with open(path, "w") as f:
        f.write(f"version: 1\nn_points:  {n_points}\n{{\n{body}}}\n")


def write_w300(root):
    """Writes a 300W tree; returns {.pts stem: (1-based points, detector box, GT box or None)}."""
    rng = np.random.default_rng(1)
    faces, box_entries = {}, {}
    for stem, (extension, colour, grey) in W300_PHOTOS.items():
        write_photo(os.path.join(root, stem + extension), colour, grey=grey)
        points, box = random_face(rng, 68)
        write_pts(os.path.join(root, stem + ".pts"), points + 1.0)
        source = os.path.dirname(stem)
        boxes = None
        if not stem.startswith(("300W/", "ibug/image_003")):
            boxes = (box + 1.0, box + np.array([3.0, 2.0, -1.0, -2.0]) + 1.0)
            # The box files spell image_092 _01 without its space.
            box_entries.setdefault(source, []).append({
                "imgName": os.path.basename(stem).replace(" ", "") + extension,
                "bb_detector": boxes[0][None], "bb_ground_truth": boxes[1][None]})
        faces[stem] = (points + 1.0, *(boxes or (None, None)))
    os.makedirs(os.path.join(root, "Bounding Boxes"))
    for source, entries in box_entries.items():
        cells = np.empty((1, len(entries)), dtype=object)  # a 1xN cell of structs
        for index, entry in enumerate(entries):
            cells[0, index] = entry
        scipy.io.savemat(os.path.join(root, "Bounding Boxes", w300.box_file(source)),
                         {"bounding_boxes": cells})
    return faces


def test_w300_box_file_reads_back_in_the_real_layout(tmp_path):
    faces = write_w300(str(tmp_path))
    path = str(tmp_path / "Bounding Boxes" / "bounding_boxes_ibug.mat")
    cells = scipy.io.loadmat(path)["bounding_boxes"]
    assert cells.shape == (1, 1) and cells.dtype == object
    entry = cells[0, 0]
    assert entry.shape == (1, 1) and set(entry.dtype.names) == {
        "imgName", "bb_detector", "bb_ground_truth"}
    assert entry[0, 0]["imgName"][0] == "image_092_01.jpg"
    assert entry[0, 0]["bb_detector"].shape == (1, 4)
    boxes = w300.read_box_file(path, "bounding_boxes_ibug.mat", "bb_ground_truth")
    np.testing.assert_array_equal(boxes["image_092_01"], faces["ibug/image_092 _01"][2])


@pytest.fixture(scope="module")
def w300_built(tmp_path_factory):
    manual = tmp_path_factory.mktemp("w300_manual")
    faces = write_w300(str(manual))
    data_dir = tmp_path_factory.mktemp("w300_data")
    build.build("w300", manual_dir=str(manual), data_dir=str(data_dir), image_size=SIZE)
    return faces, manual, data_dir


def check_w300_split(data_dir, split, faces, config):
    examples = read_split(f"w300/{config}", data_dir, split)
    stems = sorted(e["source"].decode()[:-len(".pts")] for e in examples)
    assert stems == sorted(s for s in faces if s.startswith(W300_SPLITS[split]))
    for example in examples:
        stem = example["source"].decode()[:-len(".pts")]
        points, detector_box, truth_box = faces[stem]
        landmarks, box = in_photo(example)
        np.testing.assert_allclose(landmarks, points - 1.0, atol=1e-3)
        if detector_box is None:
            expected, box_source = crop.landmarks_box(points - 1.0), "landmarks"
        else:
            expected = (detector_box if config == "detector" else truth_box) - 1.0
            box_source = config
        np.testing.assert_allclose(box, expected, atol=1e-3)
        assert example["box_source"].decode() == box_source
        assert example["visible"].all()
        _, colour, grey = W300_PHOTOS[stem]
        check_pixels(example, colour, grey)


@pytest.mark.parametrize("split", list(W300_SPLITS))
def test_w300_splits_match_the_annotations(w300_built, split):
    faces, _, data_dir = w300_built
    check_w300_split(data_dir, split, faces, "detector")


def test_w300_ground_truth_boxes_without_private_set(w300_built, tmp_path, capsys):
    faces, manual, _ = w300_built
    shutil.copytree(manual, tmp_path / "manual", ignore=shutil.ignore_patterns("300W"))
    builder = prepare(w300.W300, tmp_path / "manual", tmp_path / "data", config="ground_truth")
    assert set(builder.info.splits) == {"train", "common", "challenge", "full"}
    assert "w300 challenge: 1 of 2 faces have no box entry" in capsys.readouterr().out
    for split in ("train", "challenge"):
        check_w300_split(tmp_path / "data", split, faces, "ground_truth")


@pytest.mark.parametrize("stem, points, n_points, message", [
    ("afw/1051618982_2", 49, 49, r"afw/1051618982_2.pts:2: n_points is 49, expected 68"),
    ("ibug/image_092 _01", 67, 68, r"ibug/image_092 _01.pts: 67 point lines"),
])
def test_w300_wrong_point_counts(tmp_path, stem, points, n_points, message):
    write_w300(str(tmp_path / "manual"))
    write_pts(str(tmp_path / "manual" / f"{stem}.pts"), np.ones((points, 2)), n_points)
    with pytest.raises(DatasetError, match=message):
        prepare(w300.W300, tmp_path / "manual", tmp_path / "data")


def test_w300_malformed_point_line(tmp_path):
    write_w300(str(tmp_path / "manual"))
    edit_line(str(tmp_path / "manual" / "lfpw/testset/image_0002.pts"), 9, lambda _: "12.5 x")
    with pytest.raises(DatasetError, match=r"lfpw/testset/image_0002.pts:9: token 2 'x'"):
        prepare(w300.W300, tmp_path / "manual", tmp_path / "data")


def test_w300_missing_and_unreadable_images(tmp_path, capsys):
    manual = tmp_path / "manual"
    write_w300(str(manual))
    os.remove(manual / "lfpw/trainset/image_0001.png")
    with pytest.raises(DatasetError, match=r"lfpw/trainset/image_0001.pts: .*image_0001.jpg: "
                                           "image file not found"):
        prepare(w300.W300, manual, tmp_path / "data")
    builder = prepare(w300.W300, manual, tmp_path / "data", skip_missing_images=True)
    assert builder.info.splits["train"].num_examples == 3
    assert "w300 train: skipped 1 faces" in capsys.readouterr().out
    (manual / "lfpw/trainset/image_0001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match=r"0001.pts: .*0001.png: .*cannot be decoded"):
        prepare(w300.W300, manual, tmp_path / "data2")


def test_w300_missing_manual_files(tmp_path):
    manual = tmp_path / "manual"
    write_w300(str(manual))
    for folder in ("helen", "ibug", "300W/02_Outdoor"):
        shutil.rmtree(manual / folder)
    with pytest.raises(DatasetError) as error:
        prepare(w300.W300, manual, tmp_path / "data")
    message = str(error.value)
    for name in ("helen/trainset/", "helen/testset/", "ibug/", "02_Outdoor/"):
        assert name in message
    assert "afw/" not in message and "lfpw/" not in message
