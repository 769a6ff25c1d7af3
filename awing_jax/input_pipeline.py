"""Host input pipeline: stored face crops (TFDS, array_record) → grain → uint8 batches.

Each stored example is a JPEG of the face square of ``STORED_CONTEXT`` times its box (see
:mod:`datasets.common`). Training maps it to the model input with ONE similarity (face square at
``box_scale``, random rotation, zoom, shift and mirror: AWing paper Sec. 6, docs/training.md) and
one ``cv2.warpAffine``, then adds photometric noise. Evaluation crops the face square of the dataset
box or of the landmarks' extent. Images leave the host as uint8; normalisation happens on device.

Determinism: the record order of an epoch and every random draw of a record come from
``(seed, epoch, record index)`` alone, so batches do not depend on the number of threads or worker
processes, and an iterator's ``get_state()`` resumes the exact sequence.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Sequence

import cv2
import grain
import numpy as np
import tensorflow_datasets as tfds

from awing_jax import crop, dataset_builders, errors
from awing_jax import landmarks as landmarks_lib

_REDUCED_DECODE = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                   4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


# ----------------------------------------------------------------------------------------------
# Source.


def data_source(dataset: str, split: str, data_dir: str | None = None):
    """The random-access TFDS source of a built dataset split; images stay JPEG bytes.

    ``dataset`` is a builder name, optionally with its config: ``"w300/ground_truth"``.

    Imports ``datasets.<dataset>`` when it exists (registering its builder). Records are dicts of
    NumPy arrays as described in :func:`datasets.common.face_features`, except ``image``: the
    encoded JPEG, which the pipeline decodes itself (at reduced size when that loses nothing).
    """
    name, _, builder_config = dataset.partition("/")  # e.g. "w300/ground_truth", "cofw/cofw68"
    dataset_builders.register(name)
    data_dir = data_dir or None
    try:
        builder = tfds.builder(dataset, data_dir=data_dir)
        prepared = builder.is_prepared()
    except tfds.core.registered.DatasetNotFoundError:
        prepared = False
    if not prepared:
        where = data_dir or "the default TFDS data dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
        raise errors.DatasetNotBuiltError(
            f"dataset {dataset!r} is not built in {where}; build it once with: "
            f"{dataset_builders.build_command()} {name} --manual_dir DIR"
            + (f" --config {builder_config}" if builder_config else "")
            + (f" --data_dir {data_dir}" if data_dir else "")
            + " (DIR: the folder of the dataset's downloaded files)")
    splits = builder.info.splits
    if re.fullmatch(r"[\w-]+", split) and split not in splits:  # (not a slice like "train[:10]")
        raise errors.UnknownSplitError(
            f"dataset {dataset!r} has no split {split!r}; its splits: {', '.join(sorted(splits))}")
    return builder.as_data_source(split=split, decoders={"image": tfds.decode.SkipDecoding()})


def stored_landmarks(source) -> tuple[np.ndarray, np.ndarray]:
    """Every record's ``landmarks`` (N, L, 2) float64 in its stored crop's pixels and
    ``visible`` (N, L) bool, read without decoding an image (the source keeps JPEG bytes)."""
    landmarks, visible = [], []
    for i in range(len(source)):
        record = source[i]
        landmarks.append(_checked_landmarks(record))
        visible.append(np.asarray(record["visible"], bool))
    return np.stack(landmarks), np.stack(visible)


def shard_bounds(num_records: int, shard_index: int, shard_count: int) -> tuple[int, int]:
    """``[start, stop)`` of the contiguous shard ``shard_index`` of ``shard_count`` (sizes differ
    by at most one record)."""
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
    return (num_records * shard_index // shard_count,
            num_records * (shard_index + 1) // shard_count)


def _source_name(example) -> str:
    source = example["source"]
    return source.decode() if isinstance(source, bytes) else str(source)


def _checked_landmarks(example) -> np.ndarray:
    landmarks = np.asarray(example["landmarks"], np.float64)
    if not np.isfinite(landmarks).all():
        raise ValueError(f"{_source_name(example)}: non-finite landmark coordinates in the stored "
                         "record; rebuild the dataset")
    return landmarks


def _face_square(example, box_key: str, input_size: int, box_scale: float) -> np.ndarray:
    try:
        return crop.face_square_matrix(example[box_key], input_size, box_scale)
    except ValueError as e:
        raise ValueError(f"{_source_name(example)}: {box_key}: {e}") from None


def _stored_geometry(example, box_key: str, input_size: int, box_scale: float,
                     protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """``(image_matrix, landmark_matrix)`` from stored-crop pixels to input pixels of a record
    under a crop protocol (:func:`awing_jax.crop.crop_geometry`).

    ``face_square`` works in stored-crop pixels (the face square is scale invariant).
    ``awing_wflw`` works in the photo's pixels: its integer casts, its clamp at the photo's
    top-left corner and its step 4 (with the record's visible landmarks) are defined there.
    """
    if protocol == "face_square":
        matrix = _face_square(example, box_key, input_size, box_scale)
        return matrix, matrix
    crop.check_protocol(protocol)
    to_photo = np.asarray(example["to_original"], np.float64)
    visible = np.asarray(example["visible"], bool)
    photo_landmarks = crop.apply(to_photo, _checked_landmarks(example)[visible])
    if box_key == "gt_box":
        photo_box = crop.landmarks_box(photo_landmarks)
    else:
        photo_box = crop.apply(to_photo, np.asarray(example[box_key], np.float64).reshape(2, 2))
    try:
        geometry = crop.crop_geometry(protocol, photo_box.reshape(4), input_size,
                                      box_scale=box_scale, landmarks=photo_landmarks)
    except ValueError as e:
        raise ValueError(f"{_source_name(example)}: {box_key}: {e}") from None
    return (crop.compose(geometry.matrix, to_photo),
            crop.compose(geometry.landmark_matrix, to_photo))


def _decode(jpeg: bytes, matrix: np.ndarray, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """Decodes a stored crop to BGR, as small as the warp ``matrix`` allows without losing detail.

    libjpeg decodes at 1/2, 1/4 or 1/8 size more cheaply (scaled IDCTs, about 0.8x the time of
    a full decode at 1/2 here) and pre-filtered against aliasing; it is used only when the output
    samples the crop at most that coarsely (output pixels per stored pixel ≤ 1/factor).

    Returns:
      ``(image, matrix)``: the (H, W, 3) uint8 BGR image and ``matrix`` re-expressed for it.
    """
    output_per_stored = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    factor = 1
    while factor < 8 and output_per_stored * factor * 2 <= 1.0:
        factor *= 2
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), _REDUCED_DECODE[factor])
    if image is None:
        raise ValueError(f"{origin}: stored image is not a decodable JPEG")
    if factor > 1:
        # Reduced pixel u covers stored pixels [f u - 1/2, f u + f - 1/2): centre f u + (f - 1) / 2.
        offset = (factor - 1) / 2.0
        matrix = crop.compose(matrix, [[factor, 0.0, offset], [0.0, factor, offset]])
    return image, matrix


def _crop_rgb(jpeg: bytes, matrix: np.ndarray, input_size: int, origin: str) -> np.ndarray:
    """One warp of the stored JPEG through ``matrix`` to an (S, S, 3) uint8 RGB image."""
    image, matrix = _decode(jpeg, matrix, origin)
    out = crop.warp(image, matrix, input_size)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB, dst=out)


# ----------------------------------------------------------------------------------------------
# Training augmentation.


def train_augment_matrix(rng: np.random.Generator, box, *, input_size: int, box_scale: float,
                         rotation: float, scale: float, translation: float,
                         flip: float) -> tuple[np.ndarray, bool]:
    """The random 2x3 similarity from stored-crop pixels to model-input pixels (docs/training.md).

    The face square of ``box`` at ``box_scale`` mapped to ``input_size``, then rotated by
    U(±rotation)° and zoomed by U(1 ± scale) about the input centre, shifted by
    U(±translation · input_size / 256) px per axis and, with probability ``flip``, mirrored
    ``x → S - 1 - x``. With all ranges zero it is exactly ``crop.face_square_matrix``.

    Returns:
      ``(matrix, flipped)``; when ``flipped`` the landmarks must also be re-ordered with the
      scheme's flip permutation.
    """
    face = crop.face_square_matrix(box, input_size, box_scale)
    jitter, flipped = augment_jitter(rng, input_size=input_size, rotation=rotation, scale=scale,
                                     translation=translation, flip=flip)
    return crop.compose(jitter, face), flipped


def augment_jitter(rng: np.random.Generator, *, input_size: int, rotation: float, scale: float,
                   translation: float, flip: float) -> tuple[np.ndarray, bool]:
    """The random input-pixel similarity of :func:`train_augment_matrix` (rotation, zoom, shift
    and mirror about the input's centre), applied after any crop protocol's matrix."""
    angle = np.deg2rad(rng.uniform(-rotation, rotation))
    zoom = rng.uniform(1.0 - scale, 1.0 + scale)
    shift = rng.uniform(-translation, translation, 2) * (input_size / 256.0)
    flipped = bool(rng.random() < flip)
    a, b = zoom * np.cos(angle), zoom * np.sin(angle)
    c = (input_size - 1) / 2.0
    jitter = np.array([[a, -b, c - a * c + b * c + shift[0]],
                       [b, a, c - b * c - a * c + shift[1]]])
    if flipped:
        jitter = crop.compose([[-1.0, 0.0, input_size - 1.0], [0.0, 1.0, 0.0]], jitter)
    return jitter, flipped


@functools.cache
def _noise_table(size: int) -> np.ndarray:
    """2 * size fixed N(0, 1) float32 samples: a random window of it is an image's noise field.

    Drawing 200k fresh normals per image costs more than decoding it; a window at a random offset,
    with a random sign, is as good a noise field for augmentation and stays seeded by the record.
    """
    return np.random.default_rng(0x5EED).standard_normal(2 * size, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class TrainAugment:
    """The training transform of one stored record: geometry, one warp, photometric noise.

    Build it with :meth:`from_config`; ``dataclasses.replace`` switches single steps off.
    Occluded points keep their ``visible`` flag: the network learns to predict them anyway.
    """

    input_size: int
    box_scale: float
    flip_permutation: tuple[int, ...]
    rotation: float
    scale: float
    translation: float
    flip: float
    blur_prob: float
    blur_sigma: tuple[float, float]
    noise_prob: float
    noise_std: tuple[float, float]
    occlusion_prob: float
    occlusion_size: tuple[float, float]
    crop_protocol: str = crop.DEFAULT_PROTOCOL

    @classmethod
    def from_config(cls, config) -> TrainAugment:
        a = config.augment
        scheme = landmarks_lib.get_scheme(config.scheme)
        # A scheme without a flip permutation cannot be mirrored: no flips (the trainer says so).
        perm = scheme.flip_permutation
        flip = a.flip if perm is not None else 0.0
        return cls(
            input_size=int(config.input_size), box_scale=float(config.box_scale),
            flip_permutation=perm if perm is not None else tuple(range(scheme.num_landmarks)),
            rotation=a.rotation, scale=a.scale, translation=a.translation, flip=flip,
            blur_prob=a.blur_prob, blur_sigma=tuple(a.blur_sigma),
            noise_prob=a.noise_prob, noise_std=tuple(a.noise_std),
            occlusion_prob=a.occlusion_prob, occlusion_size=tuple(a.occlusion_size),
            crop_protocol=protocol_of(config))

    def __call__(self, example, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Stored record → ``{"image": (S, S, 3) uint8, "landmarks": (L, 2) float32 input pixels,
        "visible": (L,) bool}``."""
        landmarks = _checked_landmarks(example)
        jitter = dict(input_size=self.input_size, rotation=self.rotation, scale=self.scale,
                      translation=self.translation, flip=self.flip)
        if self.crop_protocol == "face_square":
            try:
                matrix, flipped = train_augment_matrix(
                    rng, example["box"], box_scale=self.box_scale, **jitter)
            except ValueError as e:
                raise ValueError(f"{_source_name(example)}: box: {e}") from None
            labels = matrix
        else:  # the protocol's crop of the dataset box, then the same random similarity
            base, base_labels = _stored_geometry(example, "box", self.input_size,
                                                 self.box_scale, self.crop_protocol)
            random, flipped = augment_jitter(rng, **jitter)
            matrix, labels = crop.compose(random, base), crop.compose(random, base_labels)
        image = _crop_rgb(example["image"], matrix, self.input_size, _source_name(example))
        self._photometric(image, rng)
        points = crop.apply(labels, landmarks).astype(np.float32)

        visible = np.asarray(example["visible"], bool)
        if flipped:
            perm = np.asarray(self.flip_permutation)
            points, visible = points[perm], visible[perm]
        return {"image": image, "landmarks": points, "visible": visible}

    def _photometric(self, image: np.ndarray, rng: np.random.Generator) -> None:
        """Occlusion, Gaussian blur, additive Gaussian noise (docs/training.md), in place."""
        size = self.input_size
        if rng.random() < self.occlusion_prob:
            w, h = np.maximum(rng.uniform(*self.occlusion_size, 2) * size, 1.0).astype(int)
            cx, cy = rng.uniform(0, size, 2)
            x0, y0 = max(int(cx - w / 2), 0), max(int(cy - h / 2), 0)
            x1, y1 = min(int(cx + w / 2) + 1, size), min(int(cy + h / 2) + 1, size)
            if rng.random() < 0.5:
                image[y0:y1, x0:x1] = rng.integers(0, 256, 3, dtype=np.uint8)
            else:
                image[y0:y1, x0:x1] = rng.integers(0, 256, (y1 - y0, x1 - x0, 3), dtype=np.uint8)
        if rng.random() < self.blur_prob:
            cv2.GaussianBlur(image, (0, 0), rng.uniform(*self.blur_sigma), dst=image)
        if rng.random() < self.noise_prob:
            std = rng.uniform(*self.noise_std) * rng.choice((-1.0, 1.0))
            table = _noise_table(image.size)
            start = rng.integers(0, image.size + 1)
            field = table[start:start + image.size].reshape(image.shape)
            cv2.addWeighted(image, 1.0, field, std, 0.0, dst=image, dtype=cv2.CV_8U)


class _EpochOrder:
    """Position in the endless training stream → (epoch, record, copy), reshuffled every epoch.

    An epoch holds every record of the shard ``weights[record]`` times (once without weights);
    ``copy`` numbers the repeats so each gets its own augmentation.
    """

    def __init__(self, records: np.ndarray, weights: np.ndarray | None, seed: int):
        counts = np.ones(len(records), np.int64) if weights is None else weights
        self.records = np.repeat(records, counts)
        starts = np.cumsum(counts) - counts
        self.copies = np.arange(len(self.records)) - np.repeat(starts, counts)
        self.seed = seed
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.records)

    def permutation(self, epoch: int) -> np.ndarray:
        order = self._cache.get(epoch)
        if order is None:
            order = np.random.default_rng((self.seed, 0, epoch)).permutation(len(self.records))
            # Threads straddle an epoch boundary: keep the two latest epochs.
            self._cache = dict(sorted({**self._cache, epoch: order}.items())[-2:])
        return order

    def __call__(self, position: int) -> tuple[int, int, int]:
        epoch, offset = divmod(position, len(self.records))
        j = self.permutation(epoch)[offset]
        return epoch, int(self.records[j]), int(self.copies[j])


@dataclasses.dataclass(frozen=True)
class _TrainRecord:
    """grain ``map_with_index`` function: stream position → augmented example."""

    source: Sequence
    order: _EpochOrder
    augment: TrainAugment
    host_batch: int      # examples this host contributes to each global batch
    shard_index: int
    shard_count: int

    def __call__(self, position: int, _) -> dict[str, np.ndarray]:
        # This host's position -> position in the global stream: global batch g holds global
        # positions [g * B, (g + 1) * B) and host p reads slots [p * b, (p + 1) * b) of it.
        batch, slot = divmod(position, self.host_batch)
        position = (batch * self.shard_count + self.shard_index) * self.host_batch + slot
        epoch, record, copy = self.order(position)
        rng = np.random.default_rng((self.order.seed, 1, epoch, record, copy))
        example = self.augment(self.source[record], rng)
        example["index"] = np.int32(record)
        return example


def _stack_devices(examples, num_devices: int):
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    return {k: v.reshape(num_devices, -1, *v.shape[1:]) for k, v in batch.items()}


def _ensure_absl_flags() -> None:
    """grain reads absl flags in the main and worker processes; outside an absl app (scripts,
    tests, freshly spawned workers) they are unparsed, so take their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _init_worker(worker_index: int, worker_count: int) -> None:
    del worker_index, worker_count
    _ensure_absl_flags()
    cv2.setNumThreads(1)


def _read_options(config) -> grain.ReadOptions:
    threads = int(config.prefetch_threads)
    return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(threads, 1) * 2)


def train_iterator(source, config, *, seed: int, num_local_devices: int, per_device_batch: int,
                   shard_index: int | None = None, shard_count: int | None = None,
                   sample_weights=None) -> grain.DatasetIterator:
    """Endless augmented training batches: this host's slice of each global batch.

    Args:
      source: a split from :func:`data_source`.
      config: reads ``input_size``, ``box_scale``, ``scheme``, ``augment.*``,
        ``prefetch_threads`` (threads decoding/augmenting) and ``worker_count`` (> 0: that many
        processes, each with ``prefetch_threads`` threads).
      seed: fixes the epoch orders and every augmentation.
      num_local_devices, per_device_batch: batch layout (D, b).
      shard_index, shard_count: this host's share; default ``jax.process_index()`` /
        ``jax.process_count()``. Every epoch is one global shuffle of all records (from the seed
        and the epoch) cut into global batches of ``shard_count * D * b`` examples; each host
        reads only its own disjoint slice of every global batch. The global batches, and so a
        training run, are therefore the same whatever the number of hosts and devices.
      sample_weights: optional (N,) non-negative ints: record ``i`` appears ``sample_weights[i]``
        times per epoch (data balancing).

    Returns:
      A checkpointable ``grain.DatasetIterator`` (``get_state`` / ``set_state``) of dicts
      ``image`` (D, b, S, S, 3) uint8, ``landmarks`` (D, b, L, 2) float32 input pixels,
      ``visible`` (D, b, L) bool, ``index`` (D, b) int32 record index.
    """
    if shard_index is None or shard_count is None:
        import jax

        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    weights = None
    if sample_weights is not None:
        sample_weights = np.asarray(sample_weights)
        if (sample_weights.shape != (len(source),) or sample_weights.dtype.kind not in "iu"
                or (sample_weights < 0).any()):
            raise ValueError(f"sample_weights must be ({len(source)},) non-negative integers, "
                             f"got {sample_weights.dtype} {sample_weights.shape}")
        weights = sample_weights.astype(np.int64)
    order = _EpochOrder(np.arange(len(source)), weights, seed)
    if len(order) == 0:
        raise ValueError(f"{len(source)} records with these sample weights: nothing to train on")
    augment = TrainAugment.from_config(config)
    num_points = np.shape(source[0]["landmarks"])[0]
    if num_points != len(augment.flip_permutation):
        raise ValueError(f"config.scheme {landmarks_lib.get_scheme(config.scheme).name!r} has "
                         f"{len(augment.flip_permutation)} "
                         f"landmarks but the dataset has {num_points}")
    cv2.setNumThreads(1)   # parallelism comes from grain; OpenCV's pool would oversubscribe
    batch = num_local_devices * per_device_batch
    ds = (grain.MapDataset.range(len(order)).repeat()
          .map_with_index(_TrainRecord(source, order, augment, batch, shard_index, shard_count))
          .batch(batch, batch_fn=functools.partial(_stack_devices, num_devices=num_local_devices))
          .to_iter_dataset(_read_options(config)))
    if config.worker_count > 0:
        _ensure_absl_flags()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(config.worker_count)),
                            worker_init_fn=_init_worker)
    return iter(ds)


# ----------------------------------------------------------------------------------------------
# Evaluation.


def eval_geometry(example, *, input_size: int, box_scale: float, box: str = "dataset",
                  crop_protocol: str = crop.DEFAULT_PROTOCOL
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The evaluation crop of one stored record without its pixels.

    Returns the (2, 3) stored-crop → input image matrix (the ``crop_protocol``'s crop of ``box``
    or ``gt_box``), and ``landmarks`` (L, 2) float32 and ``box`` (4,) float32 (the dataset box)
    in input pixels (through the protocol's landmark matrix), ``visible`` (L,) bool and
    ``landmark_matrix`` (2, 3) float64 (stored-crop landmarks → input pixels).
    """
    if box not in ("dataset", "gt"):
        raise ValueError(f"box must be 'dataset' or 'gt', got {box!r}")
    landmarks = _checked_landmarks(example)
    matrix, labels = _stored_geometry(example, "box" if box == "dataset" else "gt_box",
                                      input_size, box_scale, crop_protocol)
    dataset_box = crop.apply(labels, np.asarray(example["box"], np.float64).reshape(2, 2))
    return matrix, {
        "landmarks": crop.apply(labels, landmarks).astype(np.float32),
        "visible": np.asarray(example["visible"], bool),
        "box": dataset_box.reshape(4).astype(np.float32),
        "landmark_matrix": labels,
    }


def eval_example(example, index: int, *, input_size: int, box_scale: float,
                 box: str = "dataset", crop_protocol: str = crop.DEFAULT_PROTOCOL
                 ) -> dict[str, np.ndarray]:
    """One stored record → the deterministic crop (``crop_protocol``) of its ``box`` or
    ``gt_box``.

    Returns :func:`eval_geometry`'s fields (but ``landmark_matrix``) plus ``image`` (S, S, 3)
    uint8, ``to_original`` (2, 3) float64 (input pixels → original photo pixels: the inverse of
    the landmark matrix), ``index`` int32, ``valid`` True.
    """
    matrix, geometry = eval_geometry(example, input_size=input_size, box_scale=box_scale, box=box,
                                     crop_protocol=crop_protocol)
    labels = geometry.pop("landmark_matrix")
    return {
        "image": _crop_rgb(example["image"], matrix, input_size, _source_name(example)),
        **geometry,
        "to_original": crop.compose(example["to_original"], crop.invert(labels)),
        "index": np.int32(index),
        "valid": np.bool_(True),
    }


def _stack_padded(examples, batch_size: int):
    """Stacks ``examples`` and pads to ``batch_size`` rows with copies of the last one, flagged
    ``valid`` False and ``index`` -1 (copies keep boxes and matrices well-formed)."""
    padded = list(examples) + [examples[-1]] * (batch_size - len(examples))
    batch = {k: np.stack([e[k] for e in padded]) for k in examples[0]}
    batch["valid"][len(examples):] = False
    batch["index"][len(examples):] = -1
    return batch


def protocol_of(config) -> str:
    """The config's crop protocol; configs written before protocols existed crop face squares."""
    return crop.check_protocol(config.get("crop_protocol", crop.DEFAULT_PROTOCOL))


def eval_batches(
source, config, *, batch_size: int, box: str | None = None,
                 shard_index: int = 0, shard_count: int = 1) -> grain.DatasetIterator:
    """Every record of the shard exactly once, in order, in batches of ``batch_size``.

    Args:
      source: a split from :func:`data_source`.
      config: reads ``input_size``, ``box_scale``, ``crop_protocol`` (``face_square`` when
        the config has none), ``eval_box`` (when ``box`` is None) and ``prefetch_threads``.
      box: ``"dataset"`` (the annotation box) or ``"gt"`` (the landmarks' extent).

    Returns:
      An iterator of flat batches: the fields of :func:`eval_example` stacked to (B, ...); the last
      batch is padded to ``batch_size`` with ``valid`` False.
    """
    transform = functools.partial(eval_example, input_size=int(config.input_size),
                                  box_scale=float(config.box_scale),
                                  box=box or config.eval_box,
                                  crop_protocol=protocol_of(config))
    start, stop = shard_bounds(len(source), shard_index, shard_count)
    cv2.setNumThreads(1)   # see train_iterator
    ds = (grain.MapDataset.range(start, stop)
          .map(lambda i: transform(source[i], i))
          .batch(batch_size, batch_fn=functools.partial(_stack_padded, batch_size=batch_size))
          .to_iter_dataset(_read_options(config)))
    return iter(ds)

