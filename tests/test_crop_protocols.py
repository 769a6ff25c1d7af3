"""The converted model's evaluation crop against the AWing authors' WFLW test geometry.

The authors' steps 1-5 (box padding, centre and scale, their crop function at 450 px, the step-4
loop that widens the window while a landmark lies within 10 px of the 450 image's edge, and the
central 360 px resized to 256) are written out here in plain NumPy/OpenCV, as their code has
them, without awing_jax.crop. The project's crop must put every landmark where theirs does
(after the half-pixel convention: the project's crop coordinates are pixel centres, theirs are
continuous) and make the same 256-px image up to resampling.
"""

import cv2
import numpy as np
import pytest

from awing_jax import convert, crop, input_pipeline
from datasets import common

PHOTO_SHAPE = (480, 640)


# ---------------------------------------------------------------- the authors' steps, re-typed


def _their_crop(image, landmarks, center, scale, resolution):
    """Step 3: their crop function (zero padding where the window leaves the image)."""
    length = 200 * scale
    top = int(center[1] - length // 2)
    bottom = int(center[1] + length // 2)
    left = int(center[0] - length // 2)
    right = int(center[0] + length // 2)
    y_pad = abs(min(top, image.shape[0] - bottom, 0))
    x_pad = abs(min(left, image.shape[1] - right, 0))
    top, bottom, left, right = top + y_pad, bottom + y_pad, left + x_pad, right + x_pad
    padded = cv2.copyMakeBorder(image, y_pad, y_pad, x_pad, x_pad, cv2.BORDER_CONSTANT,
                                value=[0, 0, 0])
    window = padded[top:bottom, left:right]
    out = cv2.resize(window, dsize=(int(resolution), int(resolution)),
                     interpolation=cv2.INTER_LINEAR)
    points = np.array(landmarks, dtype=np.float64)
    points[:, 0] = (points[:, 0] + x_pad - left) * resolution / length
    points[:, 1] = (points[:, 1] + y_pad - top) * resolution / length
    return out, points


def their_test_input(image, landmarks, box):
    """Steps 1-5: the 256-px network input, the landmarks there, and the final divisor D."""
    left, top, right, bottom = (int(v) for v in box)
    lr = int(0.05 * (right - left) / 2)
    tb = int(0.05 * (bottom - top) / 2)
    left = max(0, left - lr)
    right += lr
    top = max(0, top - tb)
    bottom += tb
    center = (right - (right - left) / 2, bottom - (bottom - top) / 2)
    divisor = 250
    while True:
        scale = (right - left + bottom - top) / divisor
        image450, points450 = _their_crop(image, landmarks, center, scale, 450)
        if not ((points450 < 10) | (points450 > 440)).any():
            break
        divisor -= 10
    image256, points256 = _their_crop(image450, points450, (225, 225), 1.8, 256)
    return image256, points256, divisor


# ---------------------------------------------------------------- fixtures


def _photo(seed: int) -> np.ndarray:
    """A smooth but busy RGB photo: blobs ten to tens of pixels wide."""
    rng = np.random.default_rng(seed)
    height, width = PHOTO_SHAPE
    coarse = rng.uniform(0, 255, (height // 16, width // 16, 3)).astype(np.float32)
    fine = rng.uniform(-60, 60, (height // 10, width // 10, 3)).astype(np.float32)
    photo = (cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
             + cv2.resize(fine, (width, height), interpolation=cv2.INTER_CUBIC))
    return np.clip(photo, 0, 255).astype(np.uint8)


def _landmarks(rng, box, spread: float = 0.9) -> np.ndarray:
    """98 points around the box centre, ``spread`` half-box sizes out."""
    x1, y1, x2, y2 = box
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    half = np.array([(x2 - x1) / 2, (y2 - y1) / 2])
    points = centre + rng.uniform(-spread, spread, (98, 2)) * half
    points[:4] = centre + np.array([[-1, 0], [1, 0], [0, -1], [0, 1]]) * half * spread
    return points


CASES = {  # name: (box, spread of the landmarks in half-box sizes)
    "square": ((260.0, 170.0, 380.0, 290.0), 0.9),
    "tall": ((280.0, 100.0, 360.0, 310.0), 0.9),
    "wide": ((150.0, 200.0, 420.0, 300.0), 0.9),
    "top_left_corner": ((0.0, 0.0, 110.0, 130.0), 0.9),
    "step_4": ((270.0, 190.0, 370.0, 290.0), 1.9),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    box, spread = CASES[request.param]
    seed = sorted(CASES).index(request.param)
    rng = np.random.default_rng(100 + seed)
    photo = _photo(seed)
    landmarks = _landmarks(rng, box, spread)
    theirs = their_test_input(photo, landmarks, box)
    return request.param, photo, landmarks, np.asarray(box), theirs


def test_fixtures_cover_every_situation():
    divisors = {}
    for name, (box, spread) in CASES.items():
        rng = np.random.default_rng(100 + sorted(CASES).index(name))
        photo = _photo(0)
        divisors[name] = their_test_input(photo, _landmarks(rng, box, spread), box)[2]
    assert divisors["step_4"] < 250  # the step-4 loop ran
    assert all(d == 250 for n, d in divisors.items() if n != "step_4")
    # The corner box's padded window starts left of and above the photo.
    x1, y1, x2, y2 = CASES["top_left_corner"][0]
    assert 0.8 * ((x2 - x1) + (y2 - y1)) / 2 > (x1 + x2) / 2


# ---------------------------------------------------------------- the project's crops


def _mean_abs(a, b) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def test_converted_model_evaluation_crop_is_the_authors(case):
    name, photo, landmarks, box, (their_image, their_points, _) = case
    config = convert.conversion_config(num_landmarks=98)
    assert config.crop_protocol == "awing_wflw"
    example = common.make_example(photo, landmarks, np.ones(98, bool), box, f"fixture {name}")
    for which, their in (("dataset", (their_image, their_points)),
                         ("gt", their_test_input(photo, landmarks, crop.landmarks_box(landmarks))
                          [:2])):
        ours = input_pipeline.eval_example(
            example, 0, input_size=config.input_size, box_scale=config.box_scale, box=which,
            crop_protocol=input_pipeline.protocol_of(config))
        # Pixel centres (project) vs continuous coordinates (authors): half a pixel apart.
        error = np.abs(ours["landmarks"] + 0.5 - their[1])
        assert error.max() < 1e-2, (name, which, error.max())
        # The batch's way back to the photo returns the annotation.
        back = crop.apply(ours["to_original"], ours["landmarks"])
        np.testing.assert_allclose(back, landmarks, atol=1e-2)
        # Same picture: resampled once from the stored JPEG here, twice from the photo there,
        # wherever the stored crop (STORED_CONTEXT times the box) has the photo's pixels: the
        # widened step-4 window of the spread-out GT box reaches past it.
        box_for = box if which == "dataset" else crop.landmarks_box(landmarks)
        stored_to_input = crop.compose(
            crop.crop_geometry("awing_wflw", box_for, 256, landmarks=landmarks).matrix,
            example["to_original"])
        size = common.DEFAULT_IMAGE_SIZE
        outside = crop.reach_outside(stored_to_input, 256, (size, size))
        assert (outside > 0) == (name == "step_4" and which == "gt"), (name, which, outside)
        inside = crop.warp(np.full((size, size), 255, np.uint8), stored_to_input, 256) == 255
        assert inside.mean() > 0.5
        assert _mean_abs(ours["image"][inside], their[0][inside]) < 3.0, (name, which)


def test_prediction_crop_from_the_photo_is_the_authors(case):
    name, photo, landmarks, box, (their_image, their_points, divisor) = case
    geometry = crop.crop_geometry("awing_wflw", box, 256, landmarks=landmarks)
    assert geometry.divisor == divisor
    np.testing.assert_allclose(crop.apply(geometry.landmark_matrix, landmarks) + 0.5,
                               their_points, atol=1e-6)
    ours = crop.warp(photo, geometry.matrix, 256)
    assert _mean_abs(ours, their_image) < 2.0, name
    # Without landmarks (a detector's box) step 4 cannot run: the first try, D = 250.
    first = crop.crop_geometry("awing_wflw", box, 256)
    assert first.divisor == 250
    if divisor == 250:
        np.testing.assert_allclose(first.matrix, geometry.matrix)


def test_misplaced_crops_are_caught(case):
    """The comparisons above can fail: half a pixel of convention, a 1 px shift of the window or
    the nominal window length in place of the integer one break them."""
    name, photo, landmarks, box, (their_image, their_points, _) = case
    geometry = crop.crop_geometry("awing_wflw", box, 256, landmarks=landmarks)
    assert np.abs(crop.apply(geometry.landmark_matrix, landmarks) - their_points).max() > 0.4
    shifted = crop.crop_geometry("awing_wflw", box + 1.0, 256, landmarks=landmarks)
    assert np.abs(crop.apply(shifted.landmark_matrix, landmarks) + 0.5
                  - their_points).max() > 0.5
    assert _mean_abs(crop.warp(photo, shifted.matrix, 256), their_image) > 4.0, name


def test_face_square_protocol_is_the_face_square():
    box = (40.0, 60.0, 140.0, 200.0)
    geometry = crop.crop_geometry("face_square", box, 64, box_scale=1.3)
    np.testing.assert_array_equal(geometry.matrix, crop.face_square_matrix(box, 64, 1.3))
    np.testing.assert_array_equal(geometry.landmark_matrix, geometry.matrix)
    side = 140 * 1.3 * 1.5
    zoomed = crop.crop_geometry("face_square", box, 64, box_scale=1.3, zoom=1.5).matrix
    np.testing.assert_allclose(zoomed[0, 0], 64 / side)
    with pytest.raises(ValueError, match="unknown crop protocol"):
        crop.crop_geometry("square", box, 64)


def test_reach_outside():
    matrix = crop.face_square_matrix((10, 10, 30, 30), 32, 1.0)  # the box's square, 20 px
    assert crop.reach_outside(matrix, 32, (100, 100)) == 0.0
    assert crop.reach_outside(matrix, 32, (25, 100)) == pytest.approx(5.5)  # 30 - 24.5


def test_predictor_maps_landmarks_back_through_the_landmark_matrix():
    """An oracle network that outputs the landmark matrix's image of the truth: the predictor
    must return the truth, which the image matrix's inverse would miss by about half a pixel."""
    from awing_jax import predict

    box = np.array(CASES["tall"][0])
    truth = _landmarks(np.random.default_rng(5), box)
    geometry = crop.crop_geometry("awing_wflw", box, 256)
    in_crop = crop.apply(geometry.landmark_matrix, truth).astype(np.float32)

    def oracle(images):
        return np.broadcast_to(in_crop, (len(images), 98, 2)), None

    predictor = predict.Predictor.from_function(oracle, input_size=256, box_scale=1.1,
                                                scheme="wflw", boundary=False,
                                                crop_protocol="awing_wflw")
    found = predictor.predict(_photo(0), box[None], refine=0)[0]
    np.testing.assert_allclose(found, truth, atol=1e-3)
    wrong = crop.apply(crop.invert(geometry.matrix), in_crop)
    assert np.abs(wrong - truth).max() > 0.3


def test_export_sidecar_carries_the_protocol(monkeypatch):
    from awing_jax import export, predict

    meta = export.metadata(convert.conversion_config(num_landmarks=98))
    assert meta["crop_protocol"] == "awing_wflw"

    def fake_load(path):
        del path
        return (lambda images: (np.zeros((len(images), 98, 2), np.float32), None)), dict(meta)

    monkeypatch.setattr(export, "load", fake_load)
    assert predict.Predictor.from_export("model.jaxexport").crop_protocol == "awing_wflw"
    del meta["crop_protocol"]  # an artifact exported before protocols existed
    assert predict.Predictor.from_export("model.jaxexport").crop_protocol == "face_square"


def test_training_crop_without_jitter_is_the_evaluation_crop():
    import dataclasses

    box, spread = CASES["step_4"]
    landmarks = _landmarks(np.random.default_rng(7), box, spread)
    example = common.make_example(_photo(1), landmarks, np.ones(98, bool), np.asarray(box), "f")
    config = convert.conversion_config(num_landmarks=98)
    augment = dataclasses.replace(
        input_pipeline.TrainAugment.from_config(config), rotation=0.0, scale=0.0,
        translation=0.0, flip=0.0, blur_prob=0.0, noise_prob=0.0, occlusion_prob=0.0)
    assert augment.crop_protocol == "awing_wflw"
    trained = augment(example, np.random.default_rng(0))
    evaluated = input_pipeline.eval_example(example, 0, input_size=256, box_scale=1.1,
                                            crop_protocol="awing_wflw")
    np.testing.assert_allclose(trained["landmarks"], evaluated["landmarks"], atol=1e-4)
    np.testing.assert_array_equal(trained["image"], evaluated["image"])
