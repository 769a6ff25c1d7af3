"""Every field a training run reads, with the AWing paper's recipe as the defaults.

The per-dataset configs (``wflw.py``, ``w300.py``, ...) and ``demo.py`` / ``tiny.py`` start from
this one and change only what differs. Any field can be overridden on the command line:
``python train.py --config configs/wflw.py --config.loss.kind=l2``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Data: a TFDS builder under datasets/ (built with `python -m datasets.build NAME`).
    c.dataset = "wflw"
    c.data_dir = ""            # TFDS data dir; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.scheme = "wflw"          # landmark scheme, see awing_jax.landmarks
    c.train_split = "train"
    c.eval_split = "test"      # validation split evaluated during training
    c.input_size = 256         # model input S; heatmaps are S / 4
    c.box_scale = 1.1          # face square side / box longer side (WFLW boxes: +10%)
    c.eval_box = "dataset"     # "dataset" (annotation box) or "gt" (landmarks' extent)
    # How a face box becomes the model input (awing_jax.crop, docs/crop_protocols.md):
    # "face_square" (the square of max(w, h) * box_scale around the box centre) or
    # "awing_wflw" (the AWing authors' WFLW geometry; converted weights carry it).
    c.crop_protocol = "face_square"
    # Fine-tuning (awing_jax/finetune.py, docs/landmark_maps.md): a workdir whose checkpoint's
    # params and batch statistics start the run ("" = random init), and the map of its output
    # channels to this run's scheme ("" = same landmarks; "wflw_to_300w").
    c.init_from = ""
    c.init_landmark_map = ""


    # Augmentation (docs/training.md); translation is in pixels at input 256, scaled with it.
    c.augment = ml_collections.ConfigDict()
    c.augment.rotation = 50.0          # degrees, uniform in [-r, r]
    c.augment.scale = 0.15             # zoom factor uniform in [1 - s, 1 + s]
    c.augment.translation = 25.0       # pixels at 256, uniform in [-t, t] per axis
    c.augment.flip = 0.5               # probability of a horizontal flip
    c.augment.blur_prob = 0.2
    c.augment.blur_sigma = (0.5, 2.0)  # Gaussian blur sigma range, input pixels
    c.augment.noise_prob = 0.2
    c.augment.noise_std = (2.0, 10.0)  # additive Gaussian noise std range, uint8 levels
    c.augment.occlusion_prob = 0.3
    c.augment.occlusion_size = (0.1, 0.4)  # occluder side as a fraction of input_size

    # Model: docs/models.md. "cnn6" / "resnet50": the Wing paper's coordinate regressors
    # (configs/wing_cnn6.py, configs/wing_resnet50.py add their own fields).
    c.model = ml_collections.ConfigDict()
    c.model.name = "fan"
    c.model.num_stacks = 4
    c.model.features = 256
    c.model.depth = 4
    c.model.coordconv = True
    c.model.boundary = True
    # How convolutions run (same parameters, same function): "xla", "matmul", "winograd" or
    # "auto" (Winograd on CPU, matmul elsewhere); see docs/convolution_lowering.md. A training
    # run pays the compile time once and gains on every step; evaluate.py and predict.py take
    # their own (--conv_lowering).
    c.model.conv_lowering = "auto"
    c.dtype = "float32"        # compute dtype: "float32" or "bfloat16" (params stay float32)

    # Targets rendered on device, and the decoder used for metrics.
    c.target = ml_collections.ConfigDict()
    c.target.mode = "subpixel"  # "subpixel" or "reference"
    c.target.sigma = 1.0        # heatmap pixels
    c.target.boundary_sigma = 1.0
    c.decoder = "subpixel"      # "subpixel" or "reference"

    # Loss: docs/losses.md.
    c.loss = ml_collections.ConfigDict()
    c.loss.kind = "awing"       # "awing", "l2", "l1", "smooth_l1", "wing"
    c.loss.use_weight_map = True
    c.loss.weight = 10.0
    c.loss.threshold = 0.2
    # Wing loss of coordinate regressors (docs/losses.md), in pixels of a 64 x 64 input: errors
    # at other input sizes are rescaled to those units (trainer.COORDINATE_UNIT_SIZE).
    c.loss.wing_w = 10.0
    c.loss.wing_epsilon = 2.0

    # Pose-based data balancing (Wing paper, docs/training.md): replicate training records of
    # rare poses. Component -1: the scheme's default (the second for AFLW-19, else the first).
    c.pdb = False
    c.pdb_bins = 9
    c.pdb_component = -1

    # Optimiser: RMSProp, lr 1e-4, momentum 0, weight decay 1e-5, 240 epochs, x0.1 at 80 and 160.
    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "rmsprop"  # or "sgd" (ablations, exact equivalence tests), "adam"
    c.optimizer.learning_rate = 1e-4
    c.optimizer.momentum = 0.0
    c.optimizer.weight_decay = 1e-5
    c.optimizer.decay_epochs = (80, 160)
    c.optimizer.decay_factor = 0.1
    c.batch_size = 16          # global batch, split over all devices of all hosts
    c.num_epochs = 240
    c.num_train_steps = -1     # > 0 overrides num_epochs

    # Evaluation and bookkeeping.
    c.norm = "inter_ocular"
    c.failure_threshold = 0.1
    c.eval_batch_size = 32
    c.eval_every_steps = 2000
    c.checkpoint_every_steps = 2000
    c.log_every_steps = 50
    c.keep_checkpoints = 2     # the latest N checkpoints are kept, plus the best by NME
    c.worker_count = 0         # grain worker processes; 0 = threads in the main process
    c.prefetch_threads = 8     # grain threads decoding/augmenting per host

    return c
