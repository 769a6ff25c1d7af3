"""COFW and AFLW-19 builders on tiny fixtures written in the formats of the real downloads.

COFW's files are MATLAB v7.3 (HDF5): cells of images are object references, and h5py shows every
MATLAB array transposed. COFW-68 and AFLW-19 annotations are MATLAB v5 files. All coordinates in
the files are 1-based; the builders store 0-based pixel centres.
"""

import os
import shutil

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from awing_jax import crop
from datasets import common
from datasets.aflw19.aflw19 import Aflw19
from datasets.cofw.cofw import Cofw

IMAGE_SIZE = 64
TOLERANCE = 1e-3  # px in the photo


def build(builder_class, data_dir, manual_dir, **kwargs):
    builder = builder_class(data_dir=os.fspath(data_dir), file_format="array_record",
                            image_size=IMAGE_SIZE, **kwargs)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
    return builder


def read_split(name, data_dir, split):
    """Every example of a split, keyed by the number after '#' (or the file name) in ``source``."""
    source = tfds.data_source(name, data_dir=os.fspath(data_dir))[split]
    examples = {}
    for i in range(len(source)):
        example = source[i]
        text = example["source"]
        text = text.decode() if isinstance(text, bytes) else text
        examples[text] = example
    return examples


def photo_points(example, key="landmarks"):
    """Stored crop coordinates mapped back to the photo through ``to_original``."""
    return crop.apply(example["to_original"], np.asarray(example[key], np.float64))


def face(rng, width, height, num_points):
    """A face box ``x, y, w, h`` and points inside it, 1-based like the MATLAB files."""
    x, y = rng.uniform(3, 8, size=2)
    w, h = width - x - rng.uniform(3, 8), height - y - rng.uniform(3, 8)
    points = np.stack([rng.uniform(x, x + w, num_points), rng.uniform(y, y + h, num_points)], -1)
    return np.array([x, y, w, h]), points


# ---------------------------------------------------------------------------------------------
# COFW


def write_cofw(path, suffix, images, phis, boxes):
    """A MATLAB v7.3 COFW file: ``Is<suffix>`` a 1 x N cell, ``phis`` N x 87, ``bboxes`` N x 4."""
    with h5py.File(path, "w", userblock_size=512) as f:
        store = f.create_group("#refs#")
        cell = f.create_dataset(f"Is{suffix}", shape=(1, len(images)), dtype=h5py.ref_dtype)
        for i, image in enumerate(images):
            # MATLAB is column-major: its H x W x 3 array appears to h5py as 3 x W x H.
            cell[0, i] = store.create_dataset(f"i{i}", data=np.asarray(image).T).ref
        f.create_dataset(f"phis{suffix}", data=np.asarray(phis, np.float64).T)
        f.create_dataset(f"bboxes{suffix}", data=np.asarray(boxes, np.float64).T)
    with open(path, "r+b") as f:  # the text header MATLAB writes in the HDF5 user block
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116))


def cofw_faces(rng, num_faces, grey=()):
    """Photos (red, or grey for indices in ``grey``), phis (N, 87) and boxes (N, 4), 1-based."""
    images, phis, boxes = [], [], []
    for i in range(num_faces):
        height, width = 40 + 3 * i, 50 - 2 * i
        if i in grey:
            images.append(np.full((height, width), 120 + i, np.uint8))
        else:
            image = np.zeros((height, width, 3), np.uint8)
            image[..., 0] = 230  # pure red: a channel-order mistake would turn it blue
            images.append(image)
        box, points = face(rng, width, height, 29)
        occluded = rng.integers(0, 2, 29)
        phis.append(np.concatenate([points[:, 0], points[:, 1], occluded]))
        boxes.append(box)
    return images, np.array(phis), np.array(boxes)


def write_cofw68(folder, rng, test_boxes_like):
    """COFW68_Data/: test_annotations/<i>_points.mat and cofw68_test_bboxes.mat (MATLAB v5)."""
    annotations = folder / "COFW68_Data" / "test_annotations"
    annotations.mkdir(parents=True)
    points, occluded, boxes = [], [], []
    for i, (_, _, w, h) in enumerate(test_boxes_like):
        box, p = face(rng, 8 + w, 8 + h, 68)
        occ = rng.integers(0, 2, (1, 68)).astype(np.float64)
        scipy.io.savemat(annotations / f"{i + 1}_points.mat", {"Points": p, "Occ": occ})
        points.append(p)
        occluded.append(occ.ravel() == 1)
        boxes.append(box)
    scipy.io.savemat(folder / "COFW68_Data" / "cofw68_test_bboxes.mat", {"bboxes": np.array(boxes)})
    return np.array(points), np.array(occluded), np.array(boxes)


@pytest.fixture(scope="module")
def cofw(tmp_path_factory):
    rng = np.random.default_rng(0)
    manual = tmp_path_factory.mktemp("cofw_manual")
    (manual / "COFW_color").mkdir()
    train = cofw_faces(rng, 2, grey=(1,))
    test = cofw_faces(rng, 3, grey=(0,))
    write_cofw(manual / "COFW_color" / "COFW_train_color.mat", "Tr", *train)
    write_cofw(manual / "COFW_color" / "COFW_test_color.mat", "T", *test)
    cofw68 = write_cofw68(manual, rng, test[2])
    data_dir = tmp_path_factory.mktemp("cofw_data")
    build(Cofw, data_dir, manual)
    build(Cofw, data_dir, manual, config="cofw68")
    return {"manual": manual, "data": data_dir, "train": train, "test": test, "cofw68": cofw68}


def test_cofw29_landmarks_boxes_and_occlusion_match_the_file(cofw):
    for split, file in (("train", "COFW_train_color.mat"), ("test", "COFW_test_color.mat")):
        images, phis, boxes = cofw[split]
        examples = read_split("cofw", cofw["data"], split)
        assert sorted(examples) == sorted(f"COFW_color/{file}#{i}" for i in range(len(images)))
        for source, example in examples.items():
            i = int(source.rsplit("#", 1)[1])
            raw = np.stack([phis[i, :29], phis[i, 29:58]], -1) - 1
            np.testing.assert_allclose(photo_points(example), raw, atol=TOLERANCE)
            x, y, w, h = boxes[i]
            corners = crop.apply(example["to_original"], example["box"].reshape(2, 2).astype(float))
            np.testing.assert_allclose(corners.ravel(), [x - 1, y - 1, x - 1 + w, y - 1 + h],
                                       atol=TOLERANCE)
            np.testing.assert_array_equal(example["occluded"], phis[i, 58:] == 1)
            assert example["visible"].all()
            image = example["image"]
            assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
            centre = image[IMAGE_SIZE // 2, IMAGE_SIZE // 2].astype(int)
            if images[i].ndim == 2:
                assert np.ptp(centre) <= 2 and abs(centre[0] - images[i][0, 0]) <= 3
            else:
                assert centre[0] > 200 and centre[2] < 40


def test_cofw68_config_reads_the_68_point_files(cofw):
    points, occluded, boxes = cofw["cofw68"]
    builder = tfds.builder("cofw/cofw68", data_dir=os.fspath(cofw["data"]))
    assert set(builder.info.splits) == {"test"}
    examples = read_split("cofw/cofw68", cofw["data"], "test")
    assert len(examples) == len(points)
    for source, example in examples.items():
        i = int(os.path.basename(source).split("_")[0]) - 1
        assert source == f"COFW68_Data/test_annotations/{i + 1}_points.mat"
        np.testing.assert_allclose(photo_points(example), points[i] - 1, atol=TOLERANCE)
        np.testing.assert_array_equal(example["occluded"], occluded[i])
        x, y, w, h = boxes[i]
        corners = crop.apply(example["to_original"], example["box"].reshape(2, 2).astype(float))
        np.testing.assert_allclose(corners.ravel(), [x - 1, y - 1, x - 1 + w, y - 1 + h],
                                   atol=TOLERANCE)
        # The photo is face i of COFW_test_color.mat: face 0 is the grey one.
        assert (np.ptp(example["image"][IMAGE_SIZE // 2, IMAGE_SIZE // 2].astype(int)) <= 2) == (
            i == 0)


def test_cofw_missing_file_is_named(tmp_path, cofw):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(common.DatasetError, match=r"empty(.|\n)*COFW_test_color\.mat"):
        build(Cofw, tmp_path / "data", manual)
    shutil.copy(cofw["manual"] / "COFW_color" / "COFW_train_color.mat", manual)
    with pytest.raises(common.DatasetError, match=r"COFW_test_color\.mat: from COFW_color\.zip"):
        build(Cofw, tmp_path / "data", manual)
    with pytest.raises(common.DatasetError, match=r"cofw68_test_bboxes\.mat") as error:
        build(Cofw, tmp_path / "data", manual, config="cofw68")
    assert "COFW_test_color.mat" in str(error.value)


def test_cofw68_missing_points_file_is_named(tmp_path, cofw):
    manual = tmp_path / "manual"
    shutil.copytree(cofw["manual"], manual)
    os.remove(manual / "COFW68_Data" / "test_annotations" / "2_points.mat")
    with pytest.raises(common.DatasetError, match=r"1 of 3 files.*'2_points\.mat'"):
        build(Cofw, tmp_path / "data", manual, config="cofw68")


def test_cofw_wrong_phis_shape_or_missing_variable_is_named(tmp_path):
    rng = np.random.default_rng(1)
    images, phis, boxes = cofw_faces(rng, 2)
    manual = tmp_path / "manual"
    manual.mkdir()
    write_cofw(manual / "COFW_train_color.mat", "Tr", images, phis, boxes)
    write_cofw(manual / "COFW_test_color.mat", "T", images, phis[:, :86], boxes)
    expected = r"COFW_test_color\.mat: phisT has shape \(86, 2\), expected \(87, 2\)"
    with pytest.raises(common.DatasetError, match=expected):
        build(Cofw, tmp_path / "data", manual)
    write_cofw(manual / "COFW_test_color.mat", "Tr", images, phis, boxes)  # train's names
    expected = r"COFW_test_color\.mat: missing variables \['IsT', 'phisT', 'bboxesT'\]"
    with pytest.raises(common.DatasetError, match=expected):
        build(Cofw, tmp_path / "data2", manual)


def test_cofw_unreadable_image_raises_or_is_skipped(tmp_path, capsys):
    rng = np.random.default_rng(2)
    images, phis, boxes = cofw_faces(rng, 3)
    images[1] = np.zeros((4, 5, 6, 7), np.uint8)  # not an H x W (x 3) image
    manual = tmp_path / "manual"
    manual.mkdir()
    write_cofw(manual / "COFW_train_color.mat", "Tr", images[:1], phis[:1], boxes[:1])
    write_cofw(manual / "COFW_test_color.mat", "T", images, phis, boxes)
    with pytest.raises(common.DatasetError, match=r"COFW_test_color\.mat: IsT\[1\]"):
        build(Cofw, tmp_path / "data", manual)
    build(Cofw, tmp_path / "skip", manual, skip_bad_images=True)
    assert "test: skipped 1 faces" in capsys.readouterr().out
    assert sorted(read_split("cofw", tmp_path / "skip", "test")) == [
        "COFW_test_color.mat#0", "COFW_test_color.mat#2"]


# ---------------------------------------------------------------------------------------------
# AFLW-19

NUM_AFLW = 12
NUM_TRAIN = 8


def write_aflw(manual, rng, unique_image_row=3):
    """AFLWinfo_release.mat (MATLAB v5) and aflw/data/flickr/{0,2,3}/imageNNNNN.jpg.

    Faces share photos in pairs except ``unique_image_row``, whose photo holds only that face.
    """
    flickr = manual / "aflw" / "data" / "flickr"
    names, data, mask, bbox = [], [], [], []
    for row in range(NUM_AFLW):
        photo = row if row == unique_image_row else row // 2 * 2 + 100
        name = f"{(0, 2, 3)[photo % 3]}/image{photo:05d}.jpg"
        path = flickr / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(os.fspath(path), np.full((48, 56, 3), 90, np.uint8))
        (x, y, w, h), points = face(rng, 56, 48, 19)
        visible = np.ones(19) if row % 3 == 0 else (rng.uniform(size=19) > 0.3).astype(float)
        names.append(name)
        data.append(np.concatenate([points[:, 0], points[:, 1]]))
        mask.append(visible)
        bbox.append([x, x + w, y, y + h])  # left, right, top, bottom
    cell = np.empty((NUM_AFLW, 1), dtype=object)
    cell[:, 0] = names
    ra = rng.permutation(NUM_AFLW) + 1.0
    scipy.io.savemat(manual / "AFLWinfo_release.mat", {
        "bbox": np.array(bbox), "data": np.array(data), "mask_new": np.array(mask),
        "nameList": cell, "ra": ra[None, :]})
    return {"names": names, "coords": np.array(data), "mask": np.array(mask) == 1,
            "bbox": np.array(bbox), "ra": ra.astype(int)}


@pytest.fixture(scope="module")
def aflw(tmp_path_factory):
    manual = tmp_path_factory.mktemp("aflw_manual")
    truth = write_aflw(manual, np.random.default_rng(3))
    data_dir = tmp_path_factory.mktemp("aflw_data")
    build(Aflw19, data_dir, manual, num_train=NUM_TRAIN)
    return {"manual": manual, "data": data_dir, **truth}


def rows_of(examples):
    return sorted(int(source.rsplit("#", 1)[1]) for source in examples)


def test_aflw_splits_follow_ra_and_frontal_is_all_visible(aflw):
    order = aflw["ra"] - 1
    test = order[NUM_TRAIN:]
    frontal = [row for row in test if aflw["mask"][row].all()]
    assert 0 < len(frontal) < len(test)  # the fixture exercises the filter
    for split, expected in (("train", order[:NUM_TRAIN]), ("test_full", test),
                            ("test_frontal", frontal)):
        assert rows_of(read_split("aflw19", aflw["data"], split)) == sorted(expected), split


def test_aflw_landmarks_visibility_and_box_match_the_file(aflw):
    examples = {**read_split("aflw19", aflw["data"], "train"),
                **read_split("aflw19", aflw["data"], "test_full")}
    assert len(examples) == NUM_AFLW
    for source, example in examples.items():
        row = int(source.rsplit("#", 1)[1])
        assert source == f"AFLWinfo_release.mat#{row}"
        raw = np.stack([aflw["coords"][row, :19], aflw["coords"][row, 19:]], -1) - 1
        # All 19 points, those marked not visible included, keep the file's coordinates.
        np.testing.assert_allclose(photo_points(example), raw, atol=TOLERANCE)
        np.testing.assert_array_equal(example["visible"], aflw["mask"][row])
        left, right, top, bottom = aflw["bbox"][row]
        corners = crop.apply(example["to_original"], example["box"].reshape(2, 2).astype(float))
        np.testing.assert_allclose(corners.ravel(), np.array([left, top, right, bottom]) - 1,
                                   atol=TOLERANCE)
        assert example["image"].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)


def test_aflw_missing_annotation_is_named(tmp_path, aflw):
    manual = tmp_path / "manual"
    shutil.copytree(aflw["manual"] / "aflw", manual / "aflw")
    with pytest.raises(common.DatasetError, match=r"AFLWinfo_release\.mat: the 19-point"):
        build(Aflw19, tmp_path / "data", manual, num_train=NUM_TRAIN)


def test_aflw_missing_image_raises_or_is_skipped(tmp_path, capsys):
    manual = tmp_path / "manual"
    truth = write_aflw(manual, np.random.default_rng(4), unique_image_row=3)
    name = truth["names"][3]
    os.remove(manual / "aflw" / "data" / "flickr" / name)
    with pytest.raises(common.DatasetError,
                       match=rf"entry 3 \(nameList '{name}'\): .*flickr/{name}: image file not"):
        build(Aflw19, tmp_path / "data", manual, num_train=NUM_TRAIN)
    build(Aflw19, tmp_path / "skip", manual, num_train=NUM_TRAIN, skip_missing_images=True)
    out = capsys.readouterr().out
    in_train = 3 in truth["ra"][:NUM_TRAIN] - 1
    assert f"train: skipped {int(in_train)} faces" in out
    assert f"test_full: skipped {int(not in_train)} faces" in out
    rows = (rows_of(read_split("aflw19", tmp_path / "skip", "train"))
            + rows_of(read_split("aflw19", tmp_path / "skip", "test_full")))
    assert sorted(rows) == [row for row in range(NUM_AFLW) if row != 3]


def test_aflw_unreadable_image_is_named(tmp_path):
    manual = tmp_path / "manual"
    truth = write_aflw(manual, np.random.default_rng(5))
    name = truth["names"][3]
    (manual / "aflw" / "data" / "flickr" / name).write_bytes(b"not a jpeg")
    with pytest.raises(common.DatasetError, match=rf"flickr/{name}: image file exists but cannot"):
        build(Aflw19, tmp_path / "data", manual, num_train=NUM_TRAIN)


def test_aflw_bad_annotation_is_named(tmp_path):
    manual = tmp_path / "manual"
    write_aflw(manual, np.random.default_rng(6))
    path = manual / "AFLWinfo_release.mat"
    mat = scipy.io.loadmat(path)
    mat["ra"] = mat["ra"][:, :-1]
    scipy.io.savemat(path, {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(common.DatasetError, match=r"AFLWinfo_release\.mat: .*ra 11 entries"):
        build(Aflw19, tmp_path / "data", manual, num_train=NUM_TRAIN)
