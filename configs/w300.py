"""300W, 68 points: train on the 3,148 training faces, validate on the full set (689 faces)."""

from awing_jax import config_files

base = config_files.module("base")  # a sibling config, also when loaded by path


def get_config():
    c = base.get_config()
    c.dataset = "w300"
    c.scheme = "300w"
    c.eval_split = "full"
    c.norm = "inter_ocular"
    c.box_scale = 1.25
    return c
