"""The Wing paper's ResNet-50 coordinate regressor with Wing loss and PDB, on 300W by default.

    python train.py --config configs/wing_resnet50.py --workdir runs/wing_resnet50
    python train.py --config configs/wing_resnet50.py:wflw ...   # see configs/wing_cnn6.py

Everything as in ``wing_cnn6.py`` but the network: ResNet-50 (bottleneck blocks [3, 4, 6, 3],
BatchNorm, global average pool, dense 2L) on a 224 x 224 crop, the ImageNet size the paper's
ResNet-50 takes (unverified). Wing's w and epsilon stay 10 and 2 pixels of a 64 x 64 input, i.e.
35 and 7 pixels at 224 (see trainer.COORDINATE_UNIT_SIZE).
"""

import ml_collections

from awing_jax import config_files

wing_cnn6 = config_files.module("wing_cnn6")  # a sibling config, also when loaded by path


def get_config(dataset: str = "w300"):
    c = wing_cnn6.get_config(dataset)
    c.input_size = 224
    c.model = ml_collections.ConfigDict()
    c.model.name = "resnet50"
    c.model.features = 64                 # stem and first-stage bottleneck width
    c.model.stage_sizes = (3, 4, 6, 3)    # bottleneck blocks per stage
    return c
