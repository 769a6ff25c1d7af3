"""COCO keypoints datasets of your own landmarks: schemes from point names, the builder, its
coordinate mapping, export back to COCO, bad input, and training/evaluation/prediction on them.

The COCO files are written by the tests: photos of two synthetic faces side by side
(datasets/synthetic_faces renders them) annotated with a 5-point named scheme or the 68 points
in 300W order.
"""

import json
import os

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from awing_jax import crop, custom_schemes
from awing_jax.landmarks import W300, get_scheme
from datasets import build, export_coco
from datasets.synthetic_faces.synthetic_faces import render_example
from tests import _fixture
from tests._predict_helpers import random_variables

IMAGE_SIZE = 64      # stored crops
FACE = 80            # each rendered face is an 80 px square; two side by side per photo
FIVE = ("right_eye", "left_eye", "nose", "right_mouth", "left_mouth")
SPLITS = {"train": 5, "val": 2}  # photos per split (two faces each)


def five_points(lm68):
    return np.stack([lm68[36:42].mean(0), lm68[42:48].mean(0), lm68[30], lm68[48], lm68[54]])


def write_coco(root, *, num_points=5, splits=SPLITS, seed=0):
    """Writes ``root/images/<split>/<n>.png`` and ``root/annotations/<split>.json``; returns the
    COCO dicts. Ids are distinct across splits; some points are v=1 and some v=0 (x = y = 0)."""
    names = list(FIVE) if num_points == 5 else [f"face-{i}" for i in range(68)]
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    written, index, ann_id = {}, 0, 1000
    for split, num_photos in splits.items():
        os.makedirs(os.path.join(root, "images", split), exist_ok=True)
        images, annotations = [], []
        for p in range(num_photos):
            faces = [render_example(seed, "train", index + k, FACE) for k in range(2)]
            index += 2
            photo = np.concatenate([f[0] for f in faces], axis=1)
            file_name = f"{split}/{p:03d}.png"
            cv2.imwrite(os.path.join(root, "images", file_name), photo[..., ::-1])
            image_id = 10 * index + 7
            images.append({"id": image_id, "file_name": file_name, "width": 2 * FACE,
                           "height": FACE})
            for k, (_, lm68, extras) in enumerate(faces):
                shift = np.array([k * FACE, 0.0])
                points = (five_points(lm68) if num_points == 5 else lm68) + shift
                flags = rng.choice([1, 2], size=len(points), p=[0.2, 0.8])
                if ann_id % 2:
                    flags[rng.integers(len(points))] = 0
                keypoints = np.concatenate([np.where(flags[:, None] > 0, points, 0.0),
                                            flags[:, None]], axis=1)
                x1, y1, x2, y2 = extras["box"] + np.tile(shift, 2)
                annotations.append({
                    "id": ann_id, "image_id": image_id, "category_id": 3,
                    "keypoints": keypoints.reshape(-1).tolist(),
                    "num_keypoints": int((flags > 0).sum()),
                    "bbox": [x1 + 0.5, y1 + 0.5, x2 - x1, y2 - y1], "iscrowd": 0})
                ann_id += 1
        coco = {"images": images, "annotations": annotations,
                "categories": [{"id": 3, "name": "face", "supercategory": "face",
                                "keypoints": names, "skeleton": []},
                               {"id": 4, "name": "hand"}]}
        with open(os.path.join(root, "annotations", f"{split}.json"), "w") as f:
            json.dump(coco, f)
        written[split] = coco
    return written


def build_coco(manual_dir, data_dir, **kwargs):
    return build.build("coco_landmarks", manual_dir=os.fspath(manual_dir),
                       data_dir=os.fspath(data_dir), image_size=IMAGE_SIZE, **kwargs)


def records(data_dir, split):
    source = tfds.data_source("coco_landmarks", data_dir=os.fspath(data_dir))[split]
    return [source[i] for i in range(len(source))]


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    root = tmp_path_factory.mktemp("five")
    coco = write_coco(root / "manual")
    build_coco(root / "manual", root / "tfds")
    return root, coco


@pytest.fixture(scope="module")
def sixty_eight(tmp_path_factory):
    root = tmp_path_factory.mktemp("w68")
    coco = write_coco(root / "manual", num_points=68, splits={"train": 4, "val": 1}, seed=1)
    build_coco(root / "manual", root / "tfds")
    return root, coco


# ---------------------------------------------------------------------------------------------
# Schemes from point names


@pytest.mark.parametrize("left,right", [("left_eye", "right_eye"), ("l_eye", "r_eye"),
                                        ("eye_left", "eye_right"), ("Eye-L", "Eye-R"),
                                        ("LEFT EYE", "right eye")])
def test_flip_pairs_from_names(left, right):
    names = ["nose", right, "chin", left]
    scheme, notes = custom_schemes.scheme_from_names(names, name="t")
    assert scheme.flip_permutation == (0, 3, 2, 1)
    assert scheme.normalisation == {"eye_centers": ((3,), (1,))}
    assert scheme.default_norm == "eye_centers" and scheme.boundary_groups == ()
    assert notes == ["no boundary groups: the boundary channel is off"]


@pytest.mark.parametrize("names", [["p0", "p1", "p2"], ["left_eye", "nose", "chin"],
                                   ["lip", "rim", "l_x"]])
def test_names_without_pairs_give_no_flip(names):
    scheme, notes = custom_schemes.scheme_from_names(names, name="t")
    assert scheme.flip_permutation is None and scheme.default_norm == "box"
    assert any("horizontal flips are off" in n for n in notes)


def test_68_face_names_are_the_300w_scheme_and_scheme_json_completes_others():
    assert custom_schemes.scheme_from_names([f"face-{i}" for i in range(68)], name="x") == (
        W300, [])
    assert custom_schemes.scheme_from_names([f"p{i}" for i in range(68)], name="x",
                                            spec={"same_as": "300w"})[0] == W300
    spec = {"name": "mouth5", "flip_pairs": [["a", "b"], [2, 4]],
            "boundary_groups": [["a", "m", "b"]],
            "normalisation": {"mouth_width": [["a"], ["b"]]}, "default_norm": "mouth_width"}
    scheme, notes = custom_schemes.scheme_from_names(["a", "b", "c", "m", "d"], name="x",
                                                     spec=spec)
    assert scheme.name == "mouth5" and scheme.flip_permutation == (1, 0, 4, 3, 2)
    assert scheme.boundary_groups == ((0, 3, 1),) and notes == []
    assert get_scheme(scheme.to_json()) == scheme  # what checkpoints store reads back
    for bad, message in [({"flip_pairs": [["a", "zz"]]}, "'zz' is not a point"),
                         ({"boundary_groups": [[0, 9]]}, "index 9 outside"),
                         ({"same_as": "wflw"}, "98 points"), ({"colour": 1}, "unknown keys"),
                         ({"flip_pairs": [["a", "b"], ["b", "c"]]}, "in no other pair")]:
        with pytest.raises(ValueError, match=message):
            custom_schemes.scheme_from_names(["a", "b", "c", "m", "d"], name="x", spec=bad)


def test_boundary_groups_of_scheme_json_draw_the_boundary_channel():
    """A two-point curve from scheme.json is the segment between its points in the target."""
    from awing_jax.targets import render_targets

    spec = {"boundary_groups": [["right_eye", "left_eye"]]}
    scheme, notes = custom_schemes.scheme_from_names(FIVE, name="f", spec=spec)
    assert notes == [] and scheme.boundary_groups == ((0, 1),)
    # Input pixels; heatmap pixel j is centred on input pixel 4 j + 1.5.
    eyes_y = 4 * 3 + 1.5
    landmarks = np.array([[[4 * 1 + 1.5, eyes_y], [4 * 6 + 1.5, eyes_y], [15.5, 20.0],
                           [9.0, 27.0], [22.0, 27.0]]], np.float32)
    targets, mask = render_targets(landmarks, np.ones((1, 5), bool), scheme.to_json(),
                                   heatmap_size=8)
    boundary = np.asarray(targets[0, :, :, 5])
    np.testing.assert_allclose(boundary[3, 1:7], 1.0, atol=1e-6)  # on the segment
    assert boundary[3, 0] < 0.7 and boundary[6, 3] == 0.0          # off it
    np.testing.assert_array_equal(mask, 1.0)


# ---------------------------------------------------------------------------------------------
# The builder and its coordinates


def test_five_point_build_maps_back_to_the_photo_exactly(five):
    root, coco = five
    builder = tfds.builder("coco_landmarks", data_dir=os.fspath(root / "tfds"))
    scheme = get_scheme(builder.info.metadata["scheme"])
    assert scheme.point_names == FIVE and scheme.flip_permutation == (1, 0, 2, 4, 3)
    assert builder.info.metadata["keypoint_origin"] == "pixel_centre"
    for split, data in coco.items():
        stored = {int(r["annotation_id"]): r for r in records(root / "tfds", split)}
        assert sorted(stored) == sorted(a["id"] for a in data["annotations"])
        files = {i["id"]: i["file_name"] for i in data["images"]}
        for ann in data["annotations"]:
            r = stored[ann["id"]]
            kp = np.asarray(ann["keypoints"]).reshape(-1, 3)
            np.testing.assert_array_equal(r["visible"], kp[:, 2] > 0)
            np.testing.assert_array_equal(r["keypoint_flags"], kp[:, 2])
            photo = crop.apply(r["to_original"], r["landmarks"])
            labelled = kp[:, 2] > 0
            # COCO keypoints are pixel indices: awing-jax's pixel-centre coordinates unchanged.
            np.testing.assert_allclose(photo[labelled], kp[labelled, :2], atol=1e-2)
            # A COCO box is measured from the image corner: its edges are 0.5 px further out.
            x, y, w, h = ann["bbox"]
            box = crop.apply(r["to_original"], np.reshape(r["box"], (2, 2))).reshape(4)
            np.testing.assert_allclose(box, [x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5],
                                       atol=1e-2)
            assert r["image_file"].decode() == files[ann["image_id"]]
            assert r["source"].decode() == f"annotations/{split}.json#{ann['id']}"


@pytest.mark.parametrize("origin,offset", [("pixel_centre", 0.0), ("image_corner", 0.5)])
def test_keypoints_land_on_the_pixel_they_name(tmp_path, origin, offset):
    """A bright dot centred on pixel (col, row) annotated as COCO (col, row) (or, measured from
    the image corner, (col + 0.5, row + 0.5)) is where the stored crop's landmark is."""
    points = np.array([[280.0, 200.0], [330.0, 215.0], [300.0, 260.0]])
    os.makedirs(tmp_path / "m" / "annotations")
    cv2.imwrite(str(tmp_path / "m" / "photo.png"), _fixture.dotted_photo(points))
    keypoints = np.concatenate([points + offset, np.full((3, 1), 2.0)], 1)
    json.dump({"images": [{"id": 1, "file_name": "photo.png"}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                "keypoints": keypoints.reshape(-1).tolist(),
                                "bbox": [250.0, 170.0, 110.0, 120.0]}],
               "categories": [{"id": 1, "name": "face", "keypoints": ["a", "b", "c"]}]},
              open(tmp_path / "m" / "annotations" / "train.json", "w"))
    build.build("coco_landmarks", manual_dir=str(tmp_path / "m"), data_dir=str(tmp_path / "t"),
                image_size=256, keypoint_origin=origin)
    (r,) = records(tmp_path / "t", "train")
    image = np.asarray(r["image"])[..., 0]  # decoded by TFDS; grey photo
    weight = np.clip(image.astype(np.float64) - _fixture.BACKGROUND, 0, None)
    for x, y in r["landmarks"]:
        cx, cy = round(float(x)), round(float(y))
        win = weight[cy - 6:cy + 7, cx - 6:cx + 7]
        gy, gx = np.mgrid[cy - 6:cy + 7, cx - 6:cx + 7]
        centroid = np.array([(win * gx).sum(), (win * gy).sum()]) / win.sum()
        # The crop is 256 / (2.5 * 120) = 0.85 crop px per photo px: a half-pixel convention
        # error would be 0.43 crop px.
        np.testing.assert_allclose(centroid, [x, y], atol=0.1)


def test_68_point_category_is_the_300w_scheme(sixty_eight):
    root, _ = sixty_eight
    assert get_scheme(tfds.builder("coco_landmarks", data_dir=os.fspath(root / "tfds"))
                      .info.metadata["scheme"]) == W300
    config = tiny_config(root / "tfds")
    resolved = custom_schemes.resolve_config(config, announce=None)
    assert resolved.scheme == "300w" and resolved.norm == "inter_ocular"
    assert resolved.model.boundary and resolved.augment.flip == config.augment.flip


def test_export_round_trip(five, tmp_path):
    root, coco = five
    out = tmp_path / "val.json"
    assert export_coco.main(["coco_landmarks", "--split", "val", "--out", str(out),
                             "--data_dir", str(root / "tfds")]) == 0
    exported = json.load(open(out))
    original = coco["val"]
    assert exported["categories"][0]["keypoints"] == list(FIVE)
    assert exported["categories"][0]["id"] == 3
    assert sorted(exported["images"], key=lambda i: i["id"]) == sorted(
        original["images"], key=lambda i: i["id"])
    by_id = {a["id"]: a for a in exported["annotations"]}
    assert sorted(by_id) == sorted(a["id"] for a in original["annotations"])
    for ann in original["annotations"]:
        got = by_id[ann["id"]]
        assert got["image_id"] == ann["image_id"] and got["category_id"] == 3
        np.testing.assert_allclose(got["keypoints"], ann["keypoints"], atol=1e-2)
        np.testing.assert_allclose(got["bbox"], ann["bbox"], atol=1e-2)
        assert got["num_keypoints"] == ann["num_keypoints"]


def test_export_of_crops_for_datasets_without_photos(tmp_path):
    data_dir = str(tmp_path / "syn")
    build.build("synthetic_faces", data_dir=data_dir, num_train=2, num_test=0, image_size=32)
    out = tmp_path / "s.json"
    assert export_coco.main(["synthetic_faces", "--split", "train", "--out", str(out),
                             "--data_dir", data_dir, "--crops", str(tmp_path / "crops")]) == 0
    exported = json.load(open(out))
    source = tfds.data_source("synthetic_faces", data_dir=data_dir)["train"]
    assert exported["categories"][0]["keypoints"] == [f"face-{i}" for i in range(68)]
    for index, (image, ann) in enumerate(zip(exported["images"], exported["annotations"],
                                             strict=True)):
        assert cv2.imread(image["file_name"]).shape == (32, 32, 3)
        assert (image["width"], image["height"]) == (32, 32)
        kp = np.reshape(ann["keypoints"], (-1, 3))
        np.testing.assert_allclose(kp[:, :2], source[index]["landmarks"], atol=1e-3)


# ---------------------------------------------------------------------------------------------
# Bad input: one error line naming the file and the annotation, exit status 2


def write_one(root, mutate):
    """A one-photo COCO dir whose train.json is changed by ``mutate(coco)``."""
    coco = write_coco(root, splits={"train": 1})["train"]
    mutate(coco)
    with open(os.path.join(root, "annotations", "train.json"), "w") as f:
        json.dump(coco, f)


def set_first(key, value):
    return lambda coco: coco["annotations"][0].__setitem__(key, value)


BAD_INPUTS = {
    "keypoints_not_3k": (set_first("keypoints", [1.0] * 14),
                         "annotation id 1000: 14 keypoint values are not 3·K numbers"),
    "keypoints_not_numbers": (set_first("keypoints", [1.0] * 14 + ["x"]),
                              "annotation id 1000: 'keypoints' must be a list of finite numbers"),
    "k_differs": (set_first("keypoints", [1.0] * 18),
                  "annotation id 1000: 6 keypoints where the category names 5"),
    "bbox_missing": (lambda c: c["annotations"][1].pop("bbox"),
                     "annotation id 1001: no 'bbox'"),
    "bbox_not_positive": (set_first("bbox", [3.0, 4.0, 0.0, 20.0]),
                          "annotation id 1000: 'bbox' [3.0, 4.0, 0.0, 20.0] has a width or "
                          "height that is not positive"),
    "category_without_names": (lambda c: c["categories"][0].pop("keypoints"),
                               "annotation id 1000 (category id 3) has keypoints but its "
                               "category has no keypoint names"),
    "empty_keypoint_names": (lambda c: c["categories"][0].__setitem__("keypoints", []),
                             "category id 3 ('face') has no keypoint names"),
    "duplicate_annotation_id": (set_first("id", 1001), "duplicate annotation id 1001"),
    "duplicate_image_id": (lambda c: c["images"].append(dict(c["images"][0])),
                           "duplicate image id"),
    "bad_flag": (lambda c: c["annotations"][0]["keypoints"].__setitem__(2, 3),
                 "annotation id 1000: visibility flags [3.0] are not 0, 1 or 2"),
    "unknown_image": (set_first("image_id", 5), "annotation id 1000: image_id 5 is not an "
                      "image of the file"),
    "image_missing": (lambda c: c["images"][0].__setitem__("file_name", "nowhere.png"),
                      "annotation id 1000: "),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_error_line_naming_file_and_annotation(case, tmp_path, capsys):
    mutate, message = BAD_INPUTS[case]
    write_one(tmp_path / "m", mutate)
    code = build.main(["coco_landmarks", "--manual_dir", str(tmp_path / "m"),
                       "--data_dir", str(tmp_path / "t"), "--image_size", "32"])
    # (TFDS's progress bars share stderr once images are read)
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: annotations/train.json: ") and message in err[0], err[0]
    if case == "image_missing":
        assert "nowhere.png: image file not found" in err[0]


def test_unreadable_image_fails_or_is_skipped(tmp_path, capsys):
    write_coco(tmp_path / "m", splits={"train": 2})
    with open(tmp_path / "m" / "images" / "train" / "000.png", "wb") as f:
        f.write(b"not a png")
    args = ["coco_landmarks", "--manual_dir", str(tmp_path / "m"), "--image_size", "32"]
    assert build.main([*args, "--data_dir", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "annotations/train.json: annotation id 1000: " in err and "cannot be decoded" in err
    assert build.main([*args, "--data_dir", str(tmp_path / "t2"), "--skip_bad_images"]) == 0
    out = capsys.readouterr().out
    assert "train: skipped 2 faces whose image is missing or unreadable" in out
    assert len(records(tmp_path / "t2", "train")) == 2
    with open(tmp_path / "m" / "images" / "train" / "001.png", "wb") as f:
        f.write(b"")  # no readable photo left: an empty train split is an error
    assert build.main([*args, "--data_dir", str(tmp_path / "t3"), "--skip_bad_images"]) == 2
    assert "split train has no examples: all 4 of its faces were skipped" in (
        capsys.readouterr().err)


def test_unlabelled_crowd_and_other_category_annotations_are_left_out_and_counted(tmp_path,
                                                                                  capsys):
    coco = write_coco(tmp_path / "m", splits={"train": 2})["train"]
    anns = coco["annotations"]
    anns[0]["keypoints"] = [0.0] * 15
    anns[1]["iscrowd"] = 1
    anns.append({"id": 7, "image_id": anns[2]["image_id"], "category_id": 4,
                 "bbox": [1.0, 1.0, 5.0, 5.0]})
    json.dump(coco, open(tmp_path / "m" / "annotations" / "train.json", "w"))
    assert build.main(["coco_landmarks", "--manual_dir", str(tmp_path / "m"), "--data_dir",
                       str(tmp_path / "t"), "--image_size", "32"]) == 0
    out = capsys.readouterr().out
    assert ("coco_landmarks train: 1 annotations of other categories ignored; 1 crowd "
            "annotations skipped; 1 faces without a labelled point skipped (ids [1000])") in out
    assert sorted(int(r["annotation_id"]) for r in records(tmp_path / "t", "train")) == [
        1002, 1003]


def test_rebuilding_other_annotations_into_a_built_data_dir_fails(tmp_path, capsys):
    write_one(tmp_path / "m", lambda c: None)
    args = ["coco_landmarks", "--manual_dir", str(tmp_path / "m"), "--data_dir",
            str(tmp_path / "t"), "--image_size", "32"]
    assert build.main(args) == 0
    assert build.main(args) == 0  # the same annotations: already built, nothing to do
    write_one(tmp_path / "m", set_first("bbox", [3.0, 4.0, 30.0, 20.0]))
    assert build.main(args) == 2
    assert "holds a coco_landmarks build of other annotations" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Training, evaluation, prediction and export on schemes from the data


def tiny_config(data_dir, **overrides):
    """configs/tiny.py sizes on a coco_landmarks build, one step (a step, an evaluation and a
    checkpoint: what is tested is the scheme's way through them, not learning)."""
    from configs import coco_landmarks, tiny

    config = tiny.get_config()
    for key in ("dataset", "scheme", "norm", "eval_split"):
        config[key] = coco_landmarks.get_config()[key]
    config.data_dir = os.fspath(data_dir)
    config.num_train_steps = 1
    config.eval_every_steps = 1
    config.update_from_flattened_dict(overrides)
    return config


# Compiling dominates these tests: XLA's own convolutions compile in about half the time of the
# CPU Winograd lowering (tested against them in tests/test_runtime.py).
XLA_CONVOLUTIONS = {"model.conv_lowering": "xla"}


def test_five_points_train_evaluate_predict_export(five, tmp_path, capsys):
    from flax import traverse_util

    from awing_jax import checkpoint, convert, evaluation, export, input_pipeline, trainer
    from awing_jax.models.fan import FAN
    from awing_jax.predict import Predictor

    root, coco = five
    # Fine-tuned from a 98-point boundary model in the layout of converted weights (tiny sizes),
    # one step at learning rate 0: every leaf but the output heads must be the source's.
    source = str(tmp_path / "converted")
    layout = dict(num_stacks=1, features=16, depth=1)
    initial = random_variables(FAN(98, **layout, conv_lowering="xla"), 32, seed=7)
    convert.write_checkpoint(initial, convert.conversion_config(
        num_landmarks=98, input_size=32, crop_protocol="face_square", **layout), source)
    workdir = str(tmp_path / "run")
    trainer.train_and_evaluate(tiny_config(
        root / "tfds", init_from=source, **{"optimizer.learning_rate": 0.0},
        **XLA_CONVOLUTIONS), workdir)
    out = capsys.readouterr().out
    assert "the boundary channel is off" in out and "'face', 5 points" in out
    assert (f"starting afresh (they do not fit init_from {source}): heatmap_conv_0\n"
            in out), out
    manager = checkpoint.create_manager(workdir, read_only=True)
    step = checkpoint.resolve_step(manager, "latest")
    config = checkpoint.restore_config(manager, step)
    scheme = get_scheme(config.scheme)  # the checkpoint carries the scheme, names included
    assert scheme.point_names == FIVE and config.norm == "eye_centers"
    assert not config.model.boundary and config.augment.flip > 0
    variables = checkpoint.restore_variables(manager, step)
    saved = traverse_util.flatten_dict(variables["params"])
    for path, value in traverse_util.flatten_dict(initial["params"]).items():
        if path[0] == "heatmap_conv_0":
            assert saved[path].shape[-1] == 5
        else:
            np.testing.assert_array_equal(saved[path], value, err_msg=str(path))
    source = input_pipeline.data_source(config.dataset, "val", config.data_dir)
    result = evaluation.evaluate_source(variables, source, config)
    assert result["num_images"] == 4 and result["predictions"].shape == (4, 5, 2)
    # The NME again, from the COCO file and the photo-pixel predictions: the mean error over the
    # labelled points (v > 0) over the distance of the eye points, the scheme's normaliser.
    keypoints = {a["id"]: np.reshape(a["keypoints"], (5, 3)) for a in coco["val"]["annotations"]}
    for index, nme, pred in zip(result["indices"], result["nmes"], result["predictions"],
                                strict=True):
        kp = keypoints[int(source[int(index)]["annotation_id"])]
        labelled = kp[:, 2] > 0
        error = np.linalg.norm(pred - kp[:, :2], axis=1)[labelled].mean()
        np.testing.assert_allclose(nme, error / np.linalg.norm(kp[0, :2] - kp[1, :2]),
                                   rtol=1e-3)
    assert not all(np.reshape(a["keypoints"], (5, 3))[:, 2].all()
                   for a in coco["val"]["annotations"]), "some point is unlabelled"

    photo = cv2.imread(str(root / "manual" / "images" / "val" / "000.png"))[..., ::-1].copy()
    boxes = [[a["bbox"][0] - 0.5, a["bbox"][1] - 0.5, a["bbox"][0] + a["bbox"][2] - 0.5,
              a["bbox"][1] + a["bbox"][3] - 0.5] for a in coco["val"]["annotations"][:2]]
    predictor = Predictor(workdir, "latest", conv_lowering="xla")
    assert predictor.landmark_scheme == scheme and not predictor.boundary
    landmarks = predictor.predict(photo, boxes)
    assert landmarks.shape == (2, 5, 2) and np.isfinite(landmarks).all()
    path = str(tmp_path / "five.jaxexport")
    export.export_checkpoint(workdir, path, step="latest", platforms=("cpu",),
                             conv_lowering="xla")
    exported = Predictor.from_export(path)
    assert exported.landmark_scheme == scheme
    # One pass from the same crop: the artifact and the checkpoint differ by float rounding only.
    np.testing.assert_allclose(exported.predict(photo, boxes, refine=0),
                               predictor.predict(photo, boxes, refine=0), atol=1e-3)
    # With refinement the next crop is placed from those landmarks, so rounding differences of
    # the first pass move the second crop a little: a looser bound, still far below a pixel.
    np.testing.assert_allclose(exported.predict(photo, boxes), landmarks, atol=1e-2)


def test_68_points_train_with_boundary_and_evaluate(sixty_eight, tmp_path):
    from awing_jax import checkpoint, evaluation, input_pipeline, trainer

    root, _ = sixty_eight
    workdir = str(tmp_path / "run")
    result = trainer.train_and_evaluate(tiny_config(root / "tfds", **XLA_CONVOLUTIONS), workdir)
    assert np.isfinite(result["nme"])
    manager = checkpoint.create_manager(workdir, read_only=True)
    step = checkpoint.resolve_step(manager, "latest")
    config = checkpoint.restore_config(manager, step)
    assert config.scheme == "300w" and config.model.boundary
    source = input_pipeline.data_source(config.dataset, "val", config.data_dir)
    flipped = evaluation.evaluate_source(checkpoint.restore_variables(manager, step), source,
                                         config, flip_test=True)
    assert flipped["num_images"] == 2 and np.isfinite(flipped["nme"])


def test_a_scheme_without_flips_trains_without_flips(five, tmp_path, capsys):
    """scheme.json can withhold the flip permutation: flips go off, the flip test is refused."""
    from awing_jax import evaluation

    root, _ = five
    config = tiny_config(root / "tfds")
    config.scheme = custom_schemes.scheme_from_names(
        FIVE, name="noflip", spec={"flip_permutation": None})[0].to_json()
    resolved = custom_schemes.resolve_config(config)
    assert resolved.augment.flip == 0.0
    assert "has no flip permutation: horizontal flips are off" in capsys.readouterr().out
    with pytest.raises(ValueError, match="has no flip permutation"):
        evaluation.make_inference_fn(resolved, flip_test=True)
