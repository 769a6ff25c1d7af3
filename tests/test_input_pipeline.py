"""Input pipeline: geometry against pixels, flips, determinism, sharding, checkpoints, evaluation.

Every test reads small synthetic datasets built here (tests/_fixture.py) in the stored format of
the real builders. Image/landmark consistency is measured from the pixels: the fixture photos carry
a bright Gaussian dot at chosen landmarks, and the dot's intensity centroid in the output must sit
on the output landmark.
"""

import collections
import dataclasses
import itertools
import re

import numpy as np
import pytest

from awing_jax import crop
from awing_jax import input_pipeline as ip
from awing_jax import landmarks as landmarks_lib
from configs import base
from tests import _fixture

SCHEME = landmarks_lib.AFLW19
DOTS = (0, 7, 12)   # their mirror partners 5, 10, 14 carry no dot
# Measured errors are ~0.03 px; a half-pixel slip in the crop or the reduced decode is >= 0.2 px.
DOT_TOLERANCE = 0.1


def make_config(input_size=64, threads=2):
    config = base.get_config()
    config.scheme = SCHEME.name
    config.input_size = input_size
    config.prefetch_threads = threads
    config.worker_count = 0
    return config


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("textured"))
    _fixture.build_fixture(data_dir, num_examples=12, scheme=SCHEME.name, seed=1)
    return ip.data_source(_fixture.FIXTURE_NAME, "train", data_dir)


@pytest.fixture(scope="module")
def dotted(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("dotted"))
    _fixture.build_fixture(data_dir, num_examples=6, scheme=SCHEME.name, textured=False,
                           dots=DOTS, seed=2)
    return ip.data_source(_fixture.FIXTURE_NAME, "train", data_dir)


def dot_centroid(image, point, radius):
    """Intensity centroid (x, y) of the dot near ``point`` in an (S, S, 3) image, or None when its
    window leaves the image."""
    x0, y0 = np.rint(point).astype(int) - radius
    x1, y1 = x0 + 2 * radius + 1, y0 + 2 * radius + 1
    size = image.shape[0]
    if min(x0, y0) < 0 or max(x1, y1) > size:
        return None
    weight = np.clip(image[y0:y1, x0:x1].astype(np.float64).mean(-1) - (_fixture.BACKGROUND + 15),
                     0, None)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


def dot_radius(input_size):
    # Photo → stored crop is about 1:1 (fixture box ~200 px, stored side 2.5 boxes = 512 px).
    return int(np.ceil(4 * _fixture.DOT_SIGMA * 1.4 * input_size / 256)) + 2


def no_photometric(augment):
    return dataclasses.replace(augment, blur_prob=0.0, noise_prob=0.0, occlusion_prob=0.0)


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


# ---------------------------------------------------------------------------------------------
# Geometry.


def test_zero_ranges_give_the_face_square_exactly():
    box = np.array([101.3, 87.9, 301.2, 310.4])
    matrix, flipped = ip.train_augment_matrix(
        np.random.default_rng(0), box, input_size=256, box_scale=1.1, rotation=0.0, scale=0.0,
        translation=0.0, flip=0.0)
    assert not flipped
    np.testing.assert_array_equal(matrix, crop.face_square_matrix(box, 256, 1.1))


def test_augment_matrix_is_a_similarity_within_the_ranges():
    box = np.array([100.0, 120.0, 300.0, 300.0])
    face = crop.face_square_matrix(box, 256, 1.1)
    for seed in range(50):
        matrix, flipped = ip.train_augment_matrix(
            np.random.default_rng(seed), box, input_size=256, box_scale=1.1, rotation=50.0,
            scale=0.15, translation=25.0, flip=0.5)
        jitter = crop.compose(matrix, crop.invert(face))
        linear = jitter[:, :2] * ([-1.0, 1.0] if flipped else 1.0)
        zoom = np.hypot(*linear[:, 0])
        # (zoom R) with R a rotation: orthogonal columns of equal length, det > 0.
        np.testing.assert_allclose(linear.T @ linear, zoom**2 * np.eye(2), atol=1e-12)
        assert 0.85 - 1e-12 <= zoom <= 1.15 + 1e-12
        assert abs(np.degrees(np.arctan2(linear[1, 0], linear[0, 0]))) <= 50.0 + 1e-9
        # The input centre moves by the shift only.
        centre = np.array([127.5, 127.5])
        moved = crop.apply(jitter, centre)
        if flipped:
            moved[0] = 255.0 - moved[0]
        assert np.all(np.abs(moved - centre) <= 25.0 + 1e-9)


@pytest.mark.parametrize("input_size", [256, 96])   # 96: the JPEG is decoded at half size
def test_train_image_and_landmarks_agree(dotted, input_size):
    augment = no_photometric(ip.TrainAugment.from_config(make_config(input_size)))
    augment = dataclasses.replace(augment, flip=0.0)
    radius = dot_radius(input_size)
    checked = 0
    for record in range(len(dotted)):
        example = dotted[record]
        for seed in range(3):
            out = augment(example, np.random.default_rng(seed))
            for i in DOTS:
                centroid = dot_centroid(out["image"], out["landmarks"][i], radius)
                if centroid is not None:
                    checked += 1
                    np.testing.assert_allclose(centroid, out["landmarks"][i], atol=DOT_TOLERANCE)
    assert checked >= 30


def test_flip_moves_each_dot_to_its_mirror_landmark(dotted):
    augment = no_photometric(ip.TrainAugment.from_config(make_config(256)))
    augment = dataclasses.replace(augment, flip=1.0)
    perm = np.asarray(SCHEME.flip_permutation)
    radius = dot_radius(256)
    checked = 0
    for record in range(len(dotted)):
        for seed in range(3):
            out = augment(dotted[record], np.random.default_rng(seed))
            for i in DOTS:
                mirror = int(np.flatnonzero(perm == i)[0])   # output index carrying point i
                centroid = dot_centroid(out["image"], out["landmarks"][mirror], radius)
                if centroid is None:
                    continue
                checked += 1
                np.testing.assert_allclose(centroid, out["landmarks"][mirror], atol=DOT_TOLERANCE)
                # The un-permuted slot shows no dot.
                x, y = np.rint(out["landmarks"][i]).astype(int)
                if 0 <= x < 256 and 0 <= y < 256:
                    assert out["image"][y, x].mean() < _fixture.BACKGROUND + 15
    assert checked >= 15


def test_flip_equals_mirroring_with_the_scheme_permutation(textured):
    base_augment = no_photometric(ip.TrainAugment.from_config(make_config(128)))
    still = dataclasses.replace(base_augment, rotation=0.0, scale=0.0, translation=0.0, flip=0.0)
    mirrored = dataclasses.replace(still, flip=1.0)
    example = textured[3]
    a = still(example, np.random.default_rng(0))
    b = mirrored(example, np.random.default_rng(0))
    np.testing.assert_allclose(
        b["landmarks"], landmarks_lib.flip_landmarks(a["landmarks"], 128, SCHEME), atol=1e-4)
    np.testing.assert_array_equal(b["visible"], a["visible"][list(SCHEME.flip_permutation)])
    assert np.abs(b["image"].astype(int) - a["image"][:, ::-1].astype(int)).max() <= 1


def test_photometric_augmentation_changes_pixels_not_geometry(textured):
    config = make_config(64)
    config.augment.blur_prob = config.augment.noise_prob = config.augment.occlusion_prob = 1.0
    noisy = ip.TrainAugment.from_config(config)
    clean = no_photometric(noisy)
    example = textured[0]
    for seed in range(5):
        a = noisy(example, np.random.default_rng(seed))
        b = clean(example, np.random.default_rng(seed))
        np.testing.assert_array_equal(a["landmarks"], b["landmarks"])
        assert a["image"].dtype == np.uint8 and a["image"].shape == (64, 64, 3)
        assert not np.array_equal(a["image"], b["image"])


# ---------------------------------------------------------------------------------------------
# Training iterator.


def test_train_batches_are_deterministic_and_shaped(textured):
    config = make_config()
    kwargs = dict(num_local_devices=2, per_device_batch=3, shard_index=0, shard_count=1)
    first = take(ip.train_iterator(textured, config, seed=7, **kwargs), 5)   # > 1 epoch
    again = take(ip.train_iterator(textured, make_config(threads=3), seed=7, **kwargs), 5)
    other = take(ip.train_iterator(textured, config, seed=8, **kwargs), 5)
    assert_batches_equal(first, again)
    assert not np.array_equal(first[0]["image"], other[0]["image"])
    batch = first[0]
    assert batch["image"].shape == (2, 3, 64, 64, 3) and batch["image"].dtype == np.uint8
    assert batch["landmarks"].shape == (2, 3, 19, 2) and batch["landmarks"].dtype == np.float32
    assert batch["visible"].shape == (2, 3, 19) and batch["visible"].dtype == np.bool_
    assert batch["index"].shape == (2, 3) and batch["index"].dtype == np.int32
    # Epoch 0 (batches 0, 1) and epoch 1 (2, 3) each hold every record once, in new orders.
    epochs = [np.concatenate([b["index"].ravel() for b in first[e:e + 2]]) for e in (0, 2)]
    for order in epochs:
        assert sorted(order) == list(range(12))
    assert not np.array_equal(epochs[0], epochs[1])


def test_hosts_read_disjoint_slices_of_the_same_global_batches(textured):
    # One host with the global batch of 12 (= one epoch of the 12 records) ...
    single = take(ip.train_iterator(textured, make_config(), seed=0, num_local_devices=1,
                                    per_device_batch=12, shard_index=0, shard_count=1), 2)
    for batch in single:
        assert sorted(batch["index"].ravel()) == list(range(12))
    # ... equals three hosts with 2 devices x 2 examples each, concatenated in host order.
    hosts = [take(ip.train_iterator(textured, make_config(), seed=0, num_local_devices=2,
                                    per_device_batch=2, shard_index=h, shard_count=3), 2)
             for h in range(3)]
    for step, whole in enumerate(single):
        for key in ("index", "image", "landmarks"):
            parts = [h[step][key].reshape(-1, *h[step][key].shape[2:]) for h in hosts]
            np.testing.assert_array_equal(np.concatenate(parts), whole[key].reshape(
                -1, *whole[key].shape[2:]))
    # Default: this process's share of jax.process_count() (one process here: everything).
    whole = next(ip.train_iterator(textured, make_config(), seed=0, num_local_devices=1,
                                   per_device_batch=12))
    assert sorted(whole["index"].ravel()) == list(range(12))


def test_shard_bounds_split_evaluation_records_evenly():
    for n, count in [(12, 3), (10, 4), (7, 7), (5, 2)]:
        bounds = [ip.shard_bounds(n, i, count) for i in range(count)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def test_sample_weights_replicate_records(textured):
    weights = np.array([0, 2, 1, 1, 3, 1, 1, 0, 1, 1, 1, 0])   # 12 per epoch
    iterator = ip.train_iterator(textured, make_config(), seed=0, num_local_devices=1,
                                 per_device_batch=4, shard_index=0, shard_count=1,
                                 sample_weights=weights)
    batches = take(iterator, 3)
    index = np.concatenate([b["index"].ravel() for b in batches])
    counts = collections.Counter(index.tolist())
    assert [counts.get(i, 0) for i in range(12)] == weights.tolist()
    # The copies of one record are augmented differently.
    landmarks = np.concatenate([b["landmarks"].reshape(-1, 19, 2) for b in batches])
    copies = landmarks[index == 4]
    assert not np.allclose(copies[0], copies[1]) and not np.allclose(copies[1], copies[2])
    with pytest.raises(ValueError, match="sample_weights"):
        ip.train_iterator(textured, make_config(), seed=0, num_local_devices=1,
                          per_device_batch=4, shard_index=0, shard_count=1,
                          sample_weights=-np.ones(12, int))


def test_state_restore_continues_the_sequence(textured):
    kwargs = dict(seed=3, num_local_devices=1, per_device_batch=5, shard_index=0, shard_count=1)
    iterator = ip.train_iterator(textured, make_config(), **kwargs)
    take(iterator, 2)
    state = iterator.get_state()
    expected = take(iterator, 3)
    restored = ip.train_iterator(textured, make_config(threads=1), **kwargs)
    restored.set_state(state)
    assert_batches_equal(take(restored, 3), expected)


# ---------------------------------------------------------------------------------------------
# Evaluation.


def test_eval_covers_every_record_once_with_padding(textured):
    batches = list(ip.eval_batches(textured, make_config(), batch_size=5))
    assert len(batches) == 3
    for b in batches:
        assert b["image"].shape == (5, 64, 64, 3) and b["image"].dtype == np.uint8
        assert b["to_original"].shape == (5, 2, 3) and b["to_original"].dtype == np.float64
        assert b["box"].shape == (5, 4) and b["box"].dtype == np.float32
    valid = np.concatenate([b["valid"] for b in batches])
    index = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(index[valid], np.arange(12))
    np.testing.assert_array_equal(valid, np.arange(15) < 12)
    assert (index[~valid] == -1).all()
    shards = [np.concatenate([b["index"][b["valid"]] for b in ip.eval_batches(
        textured, make_config(), batch_size=2, shard_index=s, shard_count=5)]) for s in range(5)]
    np.testing.assert_array_equal(np.concatenate(shards), np.arange(12))


@pytest.mark.parametrize("box", ["dataset", "gt"])
def test_eval_crops_the_chosen_box(textured, box):
    size, scale = 64, 1.1
    batch = next(ip.eval_batches(textured, make_config(size), batch_size=12, box=box))
    centre = (size - 1) / 2
    cropped = batch["box"] if box == "dataset" else crop.landmarks_box(batch["landmarks"])
    np.testing.assert_allclose((cropped[:, :2] + cropped[:, 2:]) / 2, centre, atol=1e-3)
    longer = np.maximum(cropped[:, 2] - cropped[:, 0], cropped[:, 3] - cropped[:, 1])
    np.testing.assert_allclose(longer, size / scale, rtol=1e-5)
    other = next(ip.eval_batches(textured, make_config(size), batch_size=12,
                                 box="gt" if box == "dataset" else "dataset"))
    assert not np.allclose(other["landmarks"], batch["landmarks"], atol=0.5)


def test_eval_to_original_recovers_the_photo_landmarks(textured):
    for batch in ip.eval_batches(textured, make_config(96), batch_size=5):
        for row in np.flatnonzero(batch["valid"]):
            stored = textured[int(batch["index"][row])]
            back = crop.apply(batch["to_original"][row], batch["landmarks"][row])
            np.testing.assert_allclose(
                back, crop.apply(stored["to_original"], stored["landmarks"]), atol=1e-3)
            _, photo = _fixture.face_geometry(1, _fixture.fixture_index(stored["source"]), 19)
            np.testing.assert_allclose(back, photo, atol=1e-3)


def test_eval_image_and_landmarks_agree(dotted):
    radius = dot_radius(256)
    checked = 0
    for batch in ip.eval_batches(dotted, make_config(256), batch_size=4):
        for row in np.flatnonzero(batch["valid"]):
            for i in DOTS:
                point = batch["landmarks"][row, i]
                centroid = dot_centroid(batch["image"][row], point, radius)
                assert centroid is not None
                np.testing.assert_allclose(centroid, point, atol=DOT_TOLERANCE)
                checked += 1
    assert checked == 3 * len(dotted)


# ---------------------------------------------------------------------------------------------
# Errors.


def test_bad_record_names_its_source(tmp_path):
    _fixture.build_fixture(str(tmp_path), num_examples=3, scheme=SCHEME.name, textured=False,
                           nan_records=(1,))
    source = ip.data_source(_fixture.FIXTURE_NAME, "train", str(tmp_path))
    name = re.escape(_fixture.fixture_source(1))
    with pytest.raises(ValueError, match=name):
        take(ip.train_iterator(source, make_config(), seed=0, num_local_devices=1,
                               per_device_batch=3, shard_index=0, shard_count=1), 1)
    with pytest.raises(ValueError, match=name):
        list(ip.eval_batches(source, make_config(), batch_size=3))


def test_scheme_must_match_the_dataset(textured):
    config = make_config()
    config.scheme = "wflw"
    with pytest.raises(ValueError, match="98 landmarks but the dataset has 19"):
        ip.train_iterator(textured, config, seed=0, num_local_devices=1, per_device_batch=1,
                          shard_index=0, shard_count=1)


def test_missing_dataset_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape("python -m datasets.build")):
        ip.data_source(_fixture.FIXTURE_NAME, "train", str(tmp_path))


def test_unbuilt_dataset_names_the_build_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"datasets\.build w300 --manual_dir DIR "
                                                r"--config ground_truth"):
        ip.data_source("w300/ground_truth", "train", str(tmp_path))
