"""300W, 68 points: train on the 3,148 training faces, validate on the full set (689 faces)."""

from configs import base


def get_config():
    c = base.get_config()
    c.dataset = "w300"
    c.scheme = "300w"
    c.eval_split = "full"
    c.norm = "inter_ocular"
    c.box_scale = 1.25
    return c
