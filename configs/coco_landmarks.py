"""Your own landmarks: a FAN on a dataset built from a COCO keypoints export.

    python -m datasets.build coco_landmarks --manual_dir ~/data/mine --data_dir ~/data/mine/tfds
    python train.py --config configs/coco_landmarks.py --config.data_dir ~/data/mine/tfds \\
        --workdir runs/mine

The landmark scheme is the one the built dataset records (``scheme = "dataset"``: its point
names, a 300W-order 68-point set, or ``scheme.json``); the NME normaliser is that scheme's default
(``norm = "default"``). Both are made explicit when training starts and stored with every
checkpoint. Without a ``val.json`` split, validate on another: ``--config.eval_split=test``.
"""

from awing_jax import config_files

base = config_files.module("base")  # a sibling config, also when loaded by path


def get_config():
    c = base.get_config()
    c.dataset = "coco_landmarks"
    c.scheme = "dataset"
    c.norm = "default"
    c.eval_split = "val"
    # Annotators' face boxes are usually tight around the face: a little more context than
    # WFLW's +10% keeps the jaw line inside the crop under augmentation.
    c.box_scale = 1.2
    return c
