"""A tiny CNN-6 coordinate regressor on tiny's input and data, for tests of the training loop.

The loop (data order, checkpoints, resume, multi-process, divergence checks, pmean'ed
gradients and synced BatchNorm) is the same for every model; this one compiles its training
step in about a fifth of the tiny FAN's time (BENCHMARKS.md, "Test suite").
"""

from awing_jax import config_files

tiny = config_files.module("tiny")  # sibling configs, also when loaded by path
wing_cnn6 = config_files.module("wing_cnn6")


def get_config():
    c = tiny.get_config()
    c.model = wing_cnn6.get_config().model
    c.model.update(features=4, depth=3, hidden=16)  # 32 -> 16 -> 8 -> 4 maps, then dense 16
    c.model.conv_lowering = "xla"  # as in tiny.py: XLA's own convolutions compile faster
    c.optimizer.name = "adam"
    c.loss.kind = "wing"
    return c
