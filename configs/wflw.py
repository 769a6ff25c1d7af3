"""WFLW, 98 points: the AWing paper's recipe (4 stacks, 256² input, RMSProp 1e-4, 240 epochs)."""

from awing_jax import config_files

base = config_files.module("base")  # a sibling config, also when loaded by path


def get_config():
    c = base.get_config()
    c.dataset = "wflw"
    c.scheme = "wflw"
    c.norm = "inter_ocular"
    c.box_scale = 1.1  # WFLW rectangles are not tight: +10% (docs/training.md)
    return c
