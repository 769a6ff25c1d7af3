"""The demo: a small FAN on the embedded synthetic_faces set, built on first use (no download).

Sized to train and evaluate in a few minutes on a 2-core CPU; every switch is the paper's method
(Adaptive Wing loss, weighted loss map, boundary channel, CoordConv), only smaller.
"""

from awing_jax import config_files

base = config_files.module("base")  # a sibling config, also when loaded by path


def get_config():
    c = base.get_config()
    c.dataset = "synthetic_faces"
    c.scheme = "300w"
    c.norm = "inter_ocular"
    c.input_size = 64
    c.box_scale = 1.25
    c.model.num_stacks = 1
    c.model.features = 64
    c.model.depth = 2
    c.batch_size = 16
    c.optimizer.learning_rate = 1e-3
    c.num_epochs = 8
    c.optimizer.decay_epochs = (6, 7)
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 250
    c.log_every_steps = 10
    c.eval_batch_size = 50
    return c
