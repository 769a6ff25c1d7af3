"""The Wing paper's CNN-6 (Feng et al., CVPR 2018): 2L coordinates regressed from a 64 x 64 crop,
trained with Wing loss and pose-based data balancing, on 300W by default.

    python train.py --config configs/wing_cnn6.py --workdir runs/wing_cnn6
    python train.py --config configs/wing_cnn6.py:wflw ...   # a dataset's protocol: w300 (default),
                                                             # wflw, cofw, aflw19, synthetic_faces
    python train.py --config configs/wing_cnn6.py --config.dataset=cofw --config.scheme=cofw \\
        --config.norm=inter_pupil --config.eval_split=test   # the same by overrides
    python train.py --config configs/wing_cnn6.py --config.loss.kind=l1 --config.pdb=False

From the Wing paper (docs/models.md): the network (5 x [3x3 conv, BN, ReLU, 2x2 max-pool] with
32/64/128/256/512 channels, dense 1024, dense 2L), Wing loss with w = 10, epsilon = 2 pixels at
64 x 64 (unverified) on each coordinate, PDB with 9 bins. Our choices, where no verified value of
the paper is at hand: Adam at 1e-3 with step decay, batch 32, 120 epochs, and this project's
augmentation with rotation +-30 deg and zoom +-10% (the AWing recipe's blur, noise, occlusion,
shift and flip kept).
"""

import ml_collections

from awing_jax import config_files

# Dataset name -> the config module holding its protocol (splits, normaliser, box scale).
DATASET_CONFIGS = {"w300": "w300", "wflw": "wflw", "cofw": "cofw", "aflw19": "aflw19",
                   "synthetic_faces": "demo"}


def dataset_config(dataset: str) -> ml_collections.ConfigDict:
    """The AWing recipe's config of ``dataset``: its splits, scheme, normaliser and box scale.

    ``dataset`` may name a builder config too, e.g. "w300/ground_truth".
    """
    name = dataset.partition("/")[0]
    if name not in DATASET_CONFIGS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(DATASET_CONFIGS)}")
    config = config_files.module(DATASET_CONFIGS[name]).get_config()
    if name != dataset:
        config.dataset = dataset
    return config


def get_config(dataset: str = "w300"):
    c = dataset_config(dataset or "w300")
    c.input_size = 64
    c.model = ml_collections.ConfigDict()
    c.model.name = "cnn6"
    c.model.features = 32    # first block's channels, doubled by each next block
    c.model.depth = 5        # conv blocks
    c.model.hidden = 1024    # hidden dense layer

    c.loss.kind = "wing"
    c.loss.wing_w = 10.0
    c.loss.wing_epsilon = 2.0
    c.pdb = True

    c.augment.rotation = 30.0
    c.augment.scale = 0.1

    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 1e-5
    c.optimizer.decay_epochs = (80, 100)
    c.optimizer.decay_factor = 0.1
    c.num_epochs = 120
    c.batch_size = 32
    return c
