"""COFW, 29 points, normalised by the inter-pupil distance as in the AWing and Wing papers."""

from awing_jax import config_files

base = config_files.module("base")  # a sibling config, also when loaded by path


def get_config():
    c = base.get_config()
    c.dataset = "cofw"
    c.scheme = "cofw"
    c.norm = "inter_pupil"
    c.box_scale = 1.25
    return c
