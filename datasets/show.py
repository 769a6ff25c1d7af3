"""Contact sheets of a built dataset: the stored crops, or what the network sees after augmentation.

    python -m datasets.show NAME[/CONFIG] --split S --out sheet.png [--n 64] [--augmented]
        [--data_dir D] [--config FILE.py] [--seed N] [--find TEXT] [--cell PX]

Each cell shows one example: the crop, its landmarks as dots coloured by index (red for the first,
through the hues to magenta for the last; a hollow ring for a point marked not visible), the
scheme's boundary curves as white lines, and, for stored crops, the dataset's face box (green) and
the landmarks' extent (yellow). The caption is the record index and the example's ``source``
(annotation file and line), the name the build errors and ``build_report.json`` use.

Without ``--augmented`` the cells are the first ``--n`` records of the split (``--seed`` draws a
random sample instead). With ``--augmented`` they are one training batch of ``--n`` examples from
:func:`awing_jax.input_pipeline.train_iterator` under the training config (``--config``; default
the dataset's config in ``configs/``), i.e. the input of the network: rotated, zoomed, shifted,
mirrored (landmarks re-ordered), blurred, noised and occluded. ``--find TEXT`` keeps the records
whose source contains TEXT (e.g. a file:line from the build report).

``synthetic_faces`` is built on first use, as ``train.py`` does; other datasets must be built with
``python -m datasets.build`` first. A user error prints one ``error:`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import colorsys
import importlib.util
import itertools
import math
import os
import sys
from collections.abc import Sequence

import cv2
import numpy as np

from awing_jax import config_files, input_pipeline
from awing_jax import landmarks as landmarks_lib

# Training config used by --augmented when --config is not given: dataset name -> file.
DEFAULT_CONFIGS = {"wflw": "configs/wflw.py", "w300": "configs/w300.py", "cofw": "configs/cofw.py",
                   "aflw19": "configs/aflw19.py", "synthetic_faces": "configs/demo.py"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOX_COLOUR = (0, 220, 0)        # RGB: the dataset's face box
EXTENT_COLOUR = (255, 220, 0)   # the visible landmarks' extent (GT box)
CURVE_COLOUR = (255, 255, 255)


def landmark_colours(num_landmarks: int) -> np.ndarray:
    """(L, 3) uint8 RGB: hue from red (index 0) towards magenta (index L - 1)."""
    hues = np.linspace(0.0, 0.83, num_landmarks) if num_landmarks > 1 else np.zeros(1)
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 1.0, 1.0)] for h in hues],
                    dtype=np.uint8)


def scheme_for(num_landmarks: int) -> landmarks_lib.LandmarkScheme | None:
    """The landmark scheme with this many points, or None (no boundary curves then)."""
    try:
        return landmarks_lib.get_scheme(int(num_landmarks))
    except ValueError:
        return None


class Subset(Sequence):
    """The records ``indices`` of a data source, as a data source."""

    def __init__(self, source, indices: Sequence[int]):
        self.source, self.indices = source, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.source[self.indices[i]]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def draw_cell(image: np.ndarray, landmarks, visible, *, cell: int, caption: str,
              boxes: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = (),
              scheme: landmarks_lib.LandmarkScheme | None = None) -> np.ndarray:
    """One annotated cell: ``image`` (S, S, 3) uint8 RGB resized to ``cell`` pixels, with the
    landmarks (L, 2) of ``image``'s pixels, boundary curves, ``boxes`` [(x1 y1 x2 y2, RGB)] and
    ``caption`` drawn on it. Returns (cell, cell, 3) uint8 RGB."""
    size = image.shape[0]
    k = cell / size
    interpolation = cv2.INTER_NEAREST if k > 1 else cv2.INTER_AREA
    out = np.ascontiguousarray(cv2.resize(image, (cell, cell), interpolation=interpolation))
    shift = 4  # sub-pixel drawing: coordinates in 1/16 pixels

    def to_cell(points):
        return np.round(((np.asarray(points, np.float64) + 0.5) * k - 0.5) * (1 << shift)).astype(
            np.int32)

    for box, colour in boxes:
        x1, y1, x2, y2 = to_cell(np.asarray(box, np.float64).reshape(2, 2)).reshape(4)
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), colour, 1, cv2.LINE_AA, shift)
    points = to_cell(landmarks)
    visible = np.asarray(visible, bool)
    if scheme is not None:
        for group in scheme.boundary_groups:
            for a, b in itertools.pairwise(group):
                if visible[a] and visible[b]:
                    cv2.line(out, tuple(points[a]), tuple(points[b]), CURVE_COLOUR, 1,
                             cv2.LINE_AA, shift)
    radius = max(2, round(cell / 90)) << shift
    for (x, y), colour, seen in zip(points, landmark_colours(len(points)), visible, strict=True):
        cv2.circle(out, (int(x), int(y)), radius, tuple(int(c) for c in colour),
                   -1 if seen else 1, cv2.LINE_AA, shift)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.33
    head, _, tail = caption.partition(" ")
    while tail and cv2.getTextSize(caption, font, scale, 1)[0][0] > cell - 4:
        tail = tail[1:]  # keep the end: file name and line
        caption = f"{head} ..{tail}"
    cv2.rectangle(out, (0, cell - 13), (cell - 1, cell - 1), (0, 0, 0), -1)
    cv2.putText(out, caption, (2, cell - 3), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _wrap(text: str, width: int, font, scale: float) -> list[str]:
    """Splits ``text`` at spaces into lines at most ``width`` pixels wide."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and cv2.getTextSize(f"{lines[-1]} {word}", font, scale, 1)[0][0] <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def sheet(cells: list[np.ndarray], title: Sequence[str], *, columns: int | None = None
          ) -> np.ndarray:
    """Tiles equal cells into a grid under a title band (wrapped to the sheet's width). RGB."""
    cell = cells[0].shape[0]
    columns = columns or math.ceil(math.sqrt(len(cells)))
    rows = math.ceil(len(cells) / columns)
    gap, line_height = 2, 16
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.42
    width = max(columns * (cell + gap) - gap, 320)
    lines = [line for text in title for line in _wrap(text, width - 8, font, scale)]
    top = line_height * len(lines) + 8
    out = np.full((top + rows * (cell + gap) - gap, width, 3), 32, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(out, text, (4, 14 + line_height * i), font, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    for i, image in enumerate(cells):
        r, c = divmod(i, columns)
        y, x = top + r * (cell + gap), c * (cell + gap)
        out[y:y + cell, x:x + cell] = image
    return out


def stored_cells(source, indices: Sequence[int], cell: int) -> list[np.ndarray]:
    """The stored crops of records ``indices`` (source keeps JPEG bytes), boxes drawn."""
    cells = []
    for i in indices:
        record = source[i]
        image = cv2.imdecode(np.frombuffer(record["image"], np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{_text(record['source'])}: stored image is not a decodable JPEG; "
                             "rebuild the dataset")
        landmarks = np.asarray(record["landmarks"], np.float64)
        cells.append(draw_cell(
            cv2.cvtColor(image, cv2.COLOR_BGR2RGB), landmarks, record["visible"], cell=cell,
            caption=f"#{i} {_text(record['source'])}", scheme=scheme_for(len(landmarks)),
            boxes=[(record["box"], BOX_COLOUR), (record["gt_box"], EXTENT_COLOUR)]))
    return cells


def load_config(path: str, dataset: str, num_landmarks: int):
    """The training config of ``path`` (a file defining ``get_config()``), for ``dataset``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: config file not found")
    spec = importlib.util.spec_from_file_location("_show_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path}: defines no get_config()")
    config = module.get_config()
    config.dataset = dataset
    scheme = landmarks_lib.get_scheme(config.scheme)
    if scheme.num_landmarks != num_landmarks:
        scheme = scheme_for(num_landmarks)
        if scheme is None:
            raise ValueError(f"{path}: scheme {config.scheme!r} has a different number of points "
                             f"than the dataset's {num_landmarks}, and no scheme has "
                             f"{num_landmarks}")
        config.scheme = scheme.name
    config.worker_count = 0
    config.prefetch_threads = 1
    return config


def augmented_cells(source, config, n: int, seed: int, cell: int, indices: Sequence[int]
                    ) -> list[np.ndarray]:
    """One training batch of ``n`` examples of ``source`` (records ``indices``), augmented."""
    iterator = input_pipeline.train_iterator(source, config, seed=seed, num_local_devices=1,
                                             per_device_batch=n, shard_index=0, shard_count=1)
    batch = next(iterator)
    scheme = landmarks_lib.get_scheme(config.scheme)
    cells = []
    for image, landmarks, visible, index in zip(batch["image"][0], batch["landmarks"][0],
                                                batch["visible"][0], batch["index"][0],
                                                strict=True):
        record = source[int(index)]
        cells.append(draw_cell(image, landmarks, visible, cell=cell, scheme=scheme,
                               caption=f"#{indices[int(index)]} {_text(record['source'])}"))
    return cells


def open_source(dataset: str, split: str, data_dir: str | None):
    """The split's data source; builds ``synthetic_faces`` when absent."""
    if dataset.partition("/")[0] == "synthetic_faces":
        try:
            input_pipeline.data_source(dataset, split, data_dir)
        except FileNotFoundError:
            from . import build

            print(f"building synthetic_faces in {data_dir or build.default_data_dir()} ...")
            build.build("synthetic_faces", data_dir=data_dir)
        except (KeyError, ValueError):
            pass
    import tensorflow_datasets as tfds

    try:
        return input_pipeline.data_source(dataset, split, data_dir)
    except (KeyError, ValueError) as e:
        splits = sorted(tfds.builder(dataset, data_dir=data_dir).info.splits)
        raise ValueError(f"{dataset}: no split {split!r} ({e}); built splits: "
                         f"{', '.join(splits)}") from None


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m datasets.show", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="dataset, optionally with its config: w300/ground_truth")
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--n", type=int, default=64, help="examples on the sheet (default 64)")
    parser.add_argument("--augmented", action="store_true",
                        help="a training batch after the input pipeline's augmentation")
    parser.add_argument("--data_dir", help="TFDS data dir (default: $TFDS_DATA_DIR or "
                                           "~/tensorflow_datasets)")
    parser.add_argument("--config", help="training config for --augmented (default: the "
                                         "dataset's file in configs/)")
    parser.add_argument("--seed", type=int, help="random sample (and augmentation) seed; default: "
                                                 "the first records, augmentation seed 0")
    parser.add_argument("--find", help="only records whose source contains this text")
    parser.add_argument("--cell", type=int, default=160, help="cell side in pixels (default 160)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.cell < 32:
        parser.error("--n must be at least 1 and --cell at least 32")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        source = open_source(args.name, args.split, args.data_dir)
        indices = list(range(len(source)))
        if args.find:
            indices = [i for i in indices if args.find in _text(source[i]["source"])]
            if not indices:
                raise ValueError(f"{args.name} {args.split}: no record's source contains "
                                 f"{args.find!r}")
        if not indices:
            raise ValueError(f"{args.name} {args.split}: the split is empty")
        n = min(args.n, len(indices))
        what = f"{args.name} {args.split}" + (f", source contains {args.find!r}" if args.find
                                              else "")
        if args.augmented:
            num_landmarks = np.shape(source[indices[0]]["landmarks"])[0]
            config_path = args.config or config_files.path(os.path.join(
                REPO, DEFAULT_CONFIGS.get(args.name.partition("/")[0], "configs/base.py")))
            config = load_config(config_path, args.name, num_landmarks)
            seed = 0 if args.seed is None else args.seed
            cells = augmented_cells(Subset(source, indices), config, n, seed, args.cell, indices)
            title = [f"{what}: {n} of {len(indices)} examples after augmentation "
                     f"({os.path.relpath(config_path)}, input {config.input_size}, seed {seed})",
                     "dots: landmarks by index (red first .. magenta last; ring: not visible); "
                     "white: boundary curves"]
        else:
            chosen = (indices[:n] if args.seed is None else
                      sorted(np.random.default_rng(args.seed).choice(indices, n, replace=False)))
            cells = stored_cells(source, chosen, args.cell)
            title = [f"{what}: {n} of {len(indices)} stored crops"
                     + ("" if args.seed is None else f" (random, seed {args.seed})"),
                     "green: face box; yellow: landmarks' extent; dots: landmarks by index "
                     "(red first .. magenta last; ring: not visible); white: boundary curves"]
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    image = sheet(cells, title)
    directory = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(directory, exist_ok=True)
    if not cv2.imwrite(args.out, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        print(f"error: {args.out}: cannot write the PNG", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(cells)} examples of {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
