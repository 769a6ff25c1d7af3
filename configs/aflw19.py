"""AFLW-19: 20,000 train / 4,386 test faces, NME normalised by the face-box size sqrt(w*h)."""

from awing_jax import config_files

base = config_files.module("base")  # a sibling config, also when loaded by path


def get_config():
    c = base.get_config()
    c.dataset = "aflw19"
    c.scheme = "aflw19"
    c.eval_split = "test_full"
    c.norm = "box"
    c.failure_threshold = 0.07
    c.box_scale = 1.25
    return c
