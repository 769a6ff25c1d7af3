"""A tiny model on a tiny input, for tests: seconds to compile and run on a CPU."""

from awing_jax import config_files

base = config_files.module("base")  # a sibling config, also when loaded by path


def get_config():
    c = base.get_config()
    c.dataset = "synthetic_faces"
    c.scheme = "300w"
    c.input_size = 32
    c.box_scale = 1.25
    c.model.num_stacks = 1
    c.model.features = 16
    # One hourglass level (8 x 8 -> 4 x 4 maps): every test program has 8 ConvBlocks instead
    # of 11, and compiling, not running, is what the tests spend their time on.
    c.model.depth = 1
    # Tests compile far more than they run: XLA's own convolutions compile in about half the
    # time of the CPU Winograd lowering that "auto" picks (docs/convolution_lowering.md).
    c.model.conv_lowering = "xla"
    c.batch_size = 8
    c.optimizer.learning_rate = 1e-3
    c.num_train_steps = 4
    c.eval_every_steps = 4
    c.checkpoint_every_steps = 2
    c.log_every_steps = 1
    c.eval_batch_size = 8
    c.prefetch_threads = 2
    return c
