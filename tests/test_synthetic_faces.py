"""The synthetic_faces builder and its renderer: determinism, the stored-crop convention, landmarks
on the drawn structures, a symmetric mean face, and a mean-shape baseline that is clearly bad."""

import dataclasses

import numpy as np
import pytest
import tensorflow_datasets as tfds

from awing_jax import crop, landmarks
from datasets.synthetic_faces import Builder, render
from datasets.synthetic_faces.synthetic_faces import render_example

NUM_TRAIN, NUM_TEST, SIZE = 160, 48, 64


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("synthetic_faces"))
    Builder(num_train=NUM_TRAIN, num_test=NUM_TEST, image_size=SIZE, data_dir=data_dir,
            file_format="array_record").download_and_prepare()
    return tfds.data_source("synthetic_faces", data_dir=data_dir)


def _stack(source, key):
    return np.stack([source[i][key] for i in range(len(source))])


def _plain(params, **changes):
    """The same face without occluder, blur or noise, so its pixels are exactly its drawing."""
    return dataclasses.replace(
        params, **{"occluder": "none", "blur_sigma": 0.0, "noise_std": 0.0, **changes})


def _luminance(rgb):
    return np.asarray(rgb, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])


def test_counts_and_features(built):
    assert len(built["train"]) == NUM_TRAIN
    assert len(built["test"]) == NUM_TEST
    example = built["train"][0]
    assert example["image"].shape == (SIZE, SIZE, 3) and example["image"].dtype == np.uint8
    assert example["landmarks"].shape == (68, 2)
    assert example["pose"].shape == (3,) and example["occluded"].shape == (68,)
    assert _stack(built["train"], "visible").all()
    sources = {s.decode() for s in _stack(built["test"], "source")}
    assert sources == {f"seed0/test#{i}" for i in range(NUM_TEST)}


def test_same_seed_same_face_other_seed_other_face():
    image, points, extras = render_example(0, "train", 5, SIZE)
    image_again, points_again, extras_again = render_example(0, "train", 5, SIZE)
    np.testing.assert_array_equal(image, image_again)
    np.testing.assert_array_equal(points, points_again)
    np.testing.assert_array_equal(extras["occluded"], extras_again["occluded"])
    for other in (render_example(1, "train", 5, SIZE), render_example(0, "test", 5, SIZE),
                  render_example(0, "train", 6, SIZE)):
        assert np.abs(other[1] - points).max() > 0.5
        assert np.abs(other[0].astype(int) - image).mean() > 5


def test_stored_example_maps_back_to_its_photo(built):
    """to_original takes stored landmarks to the rendered photo's; its inverse brings them back."""
    source = built["train"]
    for i in range(0, len(source), 40):
        example = source[i]
        split, index = example["source"].decode().split("/")[1].split("#")
        image, points, extras = render_example(0, split, int(index), SIZE)
        to_original = example["to_original"]
        np.testing.assert_allclose(crop.apply(to_original, example["landmarks"]), points,
                                   atol=1e-3)
        np.testing.assert_allclose(crop.apply(crop.invert(to_original), points),
                                   example["landmarks"], atol=1e-3)
        np.testing.assert_allclose(example["box"], extras["box"], atol=1e-3)
        np.testing.assert_array_equal(example["occluded"], extras["occluded"])
        assert np.abs(example["image"].astype(int) - image).mean() < 8  # JPEG at 64 px only


def test_box_is_a_detector_box_of_the_stored_crop(built):
    """The box is centred in the stored crop, 1/STORED_CONTEXT of it, and its 1.25 square holds
    the face (the demo's box_scale)."""
    boxes = _stack(built["train"], "box").astype(np.float64)
    points = _stack(built["train"], "landmarks")
    np.testing.assert_allclose((boxes[:, :2] + boxes[:, 2:]) / 2, (SIZE - 1) / 2, atol=1e-3)
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    np.testing.assert_allclose(side, SIZE / crop.STORED_CONTEXT, rtol=1e-5)
    assert ((points >= 0) & (points <= SIZE - 1)).all()
    half = 1.25 * side[:, None] / 2
    inside = np.all(np.abs(points - (SIZE - 1) / 2) <= half[..., None] + 0.5, axis=-1)
    assert inside.mean() > 0.99


def test_landmarks_sit_on_drawn_structures():
    """Pupils (between the eye corners) and brows are darker than the cheek; lips differ from it."""
    for index in range(10):
        rng = np.random.default_rng([7, index])
        params = _plain(render.sample_face(rng), gaze=np.zeros(2), yaw=0.0, mouth_open=0.0)
        image, points, _ = render.render_face(params, rng, 256)

        def colour(xy, image=image):
            x, y = np.round(xy).astype(int)
            return image[y, x].astype(np.float64)

        cheek = colour((points[3] + points[31]) / 2)
        for corners in ((36, 39), (42, 45)):
            pupil = colour(points[list(corners)].mean(axis=0))
            assert _luminance(pupil) < 0.6 * _luminance(cheek)
        for brow in (19, 24):
            assert _luminance(colour(points[brow])) < 0.75 * _luminance(cheek)
        for upper_and_inner in ((51, 62), (57, 66)):
            lip = colour(points[list(upper_and_inner)].mean(axis=0))
            assert np.linalg.norm(lip - cheek) > 15


def test_occluder_flags_points_under_it():
    rng = np.random.default_rng(3)
    params = render.sample_face(rng)
    flagged = 0
    for index in range(20):
        rng = np.random.default_rng([3, index])
        _, _, extras = render.render_face(_plain(params, occluder="hand"), rng, 128)
        flagged += extras["occluded"].sum()
        _, _, extras = render.render_face(_plain(params), rng, 128)
        assert not extras["occluded"].any()
    assert flagged > 20


def test_template_follows_the_300w_order():
    x, y = render.TEMPLATE[:, 0], render.TEMPLATE[:, 1]
    assert (np.diff(x[0:17]) > 0).all() and np.argmax(y[0:17]) == 8  # jaw: left ear, chin, right
    assert (np.diff(x[17:27]) > 0).all() and y[17:27].max() < y[36:48].min()  # brows above eyes
    assert (np.diff(y[27:31]) > 0).all() and (np.diff(x[31:36]) > 0).all()  # bridge down, base
    assert x[36] < x[39] < x[42] < x[45]  # outer and inner corners, image-left eye first
    assert (y[[37, 38, 43, 44]] < y[[41, 40, 47, 46]]).all()  # upper lids above lower lids
    assert x[48] < x[51] < x[54] and y[51] < y[62] < y[66] < y[57]  # lips from the top down
    assert x[60] < x[62] < x[64] and x[48] < x[60]


def test_mean_template_is_left_right_symmetric():
    perm = np.asarray(landmarks.W300.flip_permutation)
    mirrored = render.TEMPLATE[perm] * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(mirrored, render.TEMPLATE, atol=1e-12)


def test_frontal_face_renders_mirror_symmetric():
    """A frontal face without wobble is symmetric about the image's centre column: its landmarks
    under the 300w flip, and its eyes and mouth in pixels (a half-pixel slip in the drawing
    convention would break the latter)."""
    rng = np.random.default_rng(11)
    params = _plain(render.sample_face(rng), yaw=0.0, pitch=0.0, roll=0.0, gaze=np.zeros(2),
                    wobble=np.zeros((68, 2)), box_jitter=np.zeros(4), light=np.zeros(2))
    size = 256
    image, points, _ = render.render_face(params, rng, size)
    np.testing.assert_allclose(landmarks.flip_landmarks(points, size, "300w"), points, atol=1e-9)
    flipped = image[:, ::-1].astype(int)
    shifted = np.roll(flipped, 1, axis=1)
    for group in (np.arange(36, 42), np.arange(17, 22)):  # one eye, one brow: no nose shading
        x1, y1 = np.floor(points[group].min(axis=0)).astype(int) - 2
        x2, y2 = np.ceil(points[group].max(axis=0)).astype(int) + 3
        window = (slice(y1, y2), slice(x1, x2))
        assert np.abs(flipped[window] - image[window]).mean() < 1.0
        assert np.abs(shifted[window] - image[window]).mean() > 4.0


def test_mean_shape_baseline_is_clearly_bad(built):
    """Predicting the train mean shape (in box-normalised coordinates) scores a poor NME."""

    def normalised(points, boxes):
        centre = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])[:, None, None]
        return (points - centre) / side, centre, side

    train, _, _ = normalised(_stack(built["train"], "landmarks"), _stack(built["train"], "box"))
    test_points = _stack(built["test"], "landmarks").astype(np.float64)
    _, centre, side = normalised(test_points, _stack(built["test"], "box"))
    prediction = train.mean(axis=0) * side + centre
    inter_ocular = np.linalg.norm(test_points[:, 36] - test_points[:, 45], axis=-1)
    nme = np.linalg.norm(prediction - test_points, axis=-1).mean(axis=-1) / inter_ocular
    assert nme.mean() > 0.12
