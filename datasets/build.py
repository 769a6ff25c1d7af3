"""Builds a face-alignment dataset once, as TFDS array_record files (no TensorFlow needed).

    python -m datasets.build NAME --manual_dir DIR [--data_dir DIR] [--config NAME]
        [--skip_missing_images] [--skip_bad_images] [--skip_bad_annotations]
        [--image_size N] [--num_train N ... (synthetic_faces)]
        [--keypoint_origin pixel_centre|image_corner (coco_landmarks)]

Read the result with ``tfds.data_source(NAME, data_dir=DIR)``. The library entry point is
:func:`build`; a :class:`~datasets.common.DatasetError` (missing, damaged or implausible input)
makes the command print its message to stderr and exit with status 2. Every build prints a report
and writes it as ``build_report.json`` beside the prepared data.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import tensorflow_datasets as tfds

from awing_jax import errors

from . import common
from .common import DatasetError

NAMES = ("wflw", "w300", "cofw", "aflw19", "synthetic_faces", "coco_landmarks")

# Constructor keyword arguments only some builders take, exposed as --flags: name -> {kwarg: type}.
BUILDER_FLAGS: dict[str, dict[str, type]] = {
    "synthetic_faces": {"num_train": int, "num_test": int, "seed": int},
    "coco_landmarks": {"keypoint_origin": str},
}
# Switches of the builders of downloaded data (common.FaceBuilder): flag -> help.
SKIP_FLAGS = {
    "skip_missing_images": "skip (and list) faces whose photo file does not exist",
    "skip_bad_images": "skip (and list) faces whose photo does not decode completely: not an "
                       "image, truncated or corrupt JPEG/PNG",
    "skip_bad_annotations": "skip (and list) faces whose annotation is implausible: a landmark "
                            f"more than {common.PHOTO_MARGIN:g} face-box sides outside the photo "
                            f"or {common.BOX_MARGIN:g} outside its face box, or a box off the "
                            "photo",
}


def default_data_dir() -> str:
    """Where TFDS keeps datasets unless told otherwise: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def builder_class(name: str) -> type[tfds.core.GeneratorBasedBuilder]:
    """The builder of dataset ``name`` (importing it registers it with TFDS)."""
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
    return importlib.import_module(f".{name}", __package__).Builder


def build(name: str, *, manual_dir: str | None = None, data_dir: str | None = None,
          **builder_kwargs) -> tfds.core.DatasetBuilder:
    """Prepares dataset ``name`` unless already prepared, and returns its builder.

    Args:
      name: one of :data:`NAMES`.
      manual_dir: the folder holding the downloaded files (not needed once built, nor for
        ``synthetic_faces``).
      data_dir: TFDS data directory; default :func:`default_data_dir`.
      **builder_kwargs: passed to the builder: ``config``, ``image_size``, the switches of
        :data:`SKIP_FLAGS` and builder-specific ones (:data:`BUILDER_FLAGS`).

    Raises:
      DatasetError: a manual file is missing or malformed.
    """
    builder = builder_class(name)(data_dir=data_dir or default_data_dir(),
                                  file_format="array_record", **builder_kwargs)
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    builder.download_and_prepare(download_config=download_config)
    return builder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    prog = "python -m datasets.build" if __package__ == "datasets" else "awing-build-dataset"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=NAMES)
    parser.add_argument("--manual_dir", help="folder holding the manually downloaded files")
    parser.add_argument("--data_dir", help=f"TFDS data dir (default: {default_data_dir()})")
    parser.add_argument("--config", help="builder config (w300: detector | ground_truth)")
    for flag, text in SKIP_FLAGS.items():
        parser.add_argument(f"--{flag}", action="store_true",
                            help=f"{text}; not for synthetic_faces")
    parser.add_argument("--image_size", type=int, help="side of the stored crops (tests)")
    parser.add_argument("--verbosity", "-v", type=int, default=0,
                        help="1 or more: the libraries' INFO and WARNING logs too")
    every_flag = {flag: kind for flags in BUILDER_FLAGS.values() for flag, kind in flags.items()}
    for flag, kind in every_flag.items():
        users = [name for name, flags in BUILDER_FLAGS.items() if flag in flags]
        parser.add_argument(f"--{flag}", type=kind, help=f"only for {', '.join(users)}")
    args = parser.parse_args(argv)
    foreign = [f"--{flag}" for flag in every_flag
               if flag not in BUILDER_FLAGS.get(args.name, {}) and getattr(args, flag) is not None]
    if args.name == "synthetic_faces":
        foreign += [f"--{flag}" for flag in SKIP_FLAGS if getattr(args, flag)]
    if foreign:
        parser.error(f"{args.name} takes no {', '.join(foreign)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    errors.quiet_libraries(args.verbosity > 0)
    keys = ("config", "image_size", *BUILDER_FLAGS.get(args.name, {}))
    kwargs = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    kwargs.update({flag: True for flag in SKIP_FLAGS if getattr(args, flag)})
    try:
        builder = build(args.name, manual_dir=args.manual_dir, data_dir=args.data_dir, **kwargs)
    except DatasetError as e:
        return errors.report(e)
    print(f"{builder.name}: {builder.data_dir}")
    for split, info in builder.info.splits.items():
        print(f"  {split}: {info.num_examples} faces")
    report = os.path.join(builder.data_dir, common.REPORT_FILE)
    if os.path.isfile(report):
        print(f"build report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
