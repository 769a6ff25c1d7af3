"""TFDS builder of procedural faces with 68 landmarks in the 300W order (see :mod:`.render`).

The embedded default dataset: it needs no download, so the demo and the tests train and evaluate
on it. Each example is drawn directly as the stored crop of :mod:`datasets.common` (the square of
``STORED_CONTEXT`` times a detector-like face box, centred on it), so the synthetic "photo" is the
crop itself and ``to_original`` is the identity. Every example comes from its own generator seeded
with ``(seed, split, index)`` and can be regenerated alone with :func:`render_example`.

One configuration per ``data_dir``: TFDS keeps the first build it finds there, whatever the
constructor's arguments; they are recorded in the dataset's metadata.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from .. import common
from . import render

SPLITS = ("train", "test")


def render_example(seed: int, split: str, index: int, image_size: int):
    """``(image, landmarks, extras)`` of one example, as :func:`render.render_face` returns them."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    return render.render_face(render.sample_face(rng), rng, image_size)


class SyntheticFaces(common.ReportingBuilder):
    """Procedural cartoon faces: random identity, expression, pose, lighting, clutter, occluders."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}

    def __init__(self, *, num_train: int = 2000, num_test: int = 300, seed: int = 0,
                 image_size: int = 256, **kwargs):
        self.num_examples = {"train": num_train, "test": num_test}
        self.seed = seed
        self.image_size = image_size
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        extra = {
            "pose": tfds.features.Tensor(shape=(3,), dtype=np.float32,
                                         doc="yaw, pitch, roll in degrees"),
            "occluded": tfds.features.Tensor(shape=(render.NUM_LANDMARKS,), dtype=np.bool_,
                                             doc="landmark lies under the occluder"),
        }
        return self.dataset_info_from_configs(
            features=common.face_features(render.NUM_LANDMARKS, self.image_size, extra=extra),
            metadata=tfds.core.MetadataDict(
                scheme="300w", seed=self.seed, image_size=self.image_size,
                num_examples=dict(self.num_examples)),
            description=__doc__,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return self.non_empty_splits({split: self._generate_examples(split) for split in SPLITS
                                      if self.num_examples[split]})

    def _generate_examples(self, split: str):
        visible = np.ones(render.NUM_LANDMARKS, dtype=bool)
        for index in range(self.num_examples[split]):
            image, landmarks, extras = render_example(self.seed, split, index, self.image_size)
            source = f"seed{self.seed}/{split}#{index}"
            yield index, common.make_example(
                image, landmarks, visible, extras["box"], source, image_size=self.image_size,
                extra={"pose": extras["pose"], "occluded": extras["occluded"]})
