"""Inference and evaluation: the model's landmarks (decoded heatmaps, or a regressor's
coordinates), NME / FR / AUC over a split.

Shared by the training loop (periodic validation), ``evaluate.py`` and the demo's mean-shape
baseline. Errors are measured in model-input pixels, a similarity transform of the photo, so the
normalised error equals the one in photo pixels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from awing_jax import inference, input_pipeline, metrics
from awing_jax.landmarks import get_scheme, require_flip_permutation
from awing_jax.models import create_model


def batch_nme(pred, batch, config, scheme, *, norm: str | None = None):
    """Per-image NME (B,) of a batch. With the "box" normaliser and no box in the batch (training
    batches), the landmarks' extent stands in for the face box."""
    norm = norm or config.norm
    boxes = batch.get("box")
    if norm == "box" and boxes is None:
        lm = batch["landmarks"]
        boxes = jnp.concatenate([lm.min(axis=-2), lm.max(axis=-2)], axis=-1)
    return metrics.nme(pred, batch["landmarks"], scheme=scheme, norm=norm, boxes=boxes,
                       visible=batch["visible"])


def make_inference_fn(config, *, decoder: str | None = None, flip_test: bool = False,
                      conv_lowering: str | None = None):
    """A jitted ``fn(variables, images_uint8 (B, S, S, 3)) -> landmarks (B, L, 2)``:
    :func:`awing_jax.inference.infer` with the config's model and decoder.

    ``flip_test`` averages with the mirrored image's heatmaps (heatmap models) or landmarks
    (coordinate regressors), mapped back onto the image. ``conv_lowering`` overrides the
    config's (:func:`awing_jax.models.create_model`).
    """
    model = create_model(config, conv_lowering=conv_lowering)
    decoder = decoder or config.decoder
    if flip_test:
        require_flip_permutation(config.scheme)  # fail before compiling

    def fn(variables, images):
        return inference.infer(model, variables, images, decoder=decoder, flip_test=flip_test,
                               scheme=config.scheme).landmarks

    return jax.jit(fn)


def model_variables(state) -> dict:
    """``{"params", "batch_stats"}`` of a TrainState or of such a dict."""
    if isinstance(state, dict):
        return {"params": state["params"], "batch_stats": state["batch_stats"]}
    return {"params": state.params, "batch_stats": state.batch_stats}


def summarise(nmes: np.ndarray, threshold: float) -> dict:
    return {
        "nme": float(np.mean(nmes)),
        "failure_rate": float(metrics.failure_rate(nmes, threshold)),
        "auc": float(metrics.auc(nmes, threshold)),
        "num_images": len(nmes),
    }


def _gather_hosts(per_host: np.ndarray, total: int) -> np.ndarray:
    """Concatenates each host's rows (every host pads to the same length with NaN)."""
    if jax.process_count() == 1:
        return per_host
    rows = -(-total // jax.process_count())
    padded = np.full((rows, *per_host.shape[1:]), np.nan)
    padded[: len(per_host)] = per_host
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    gathered = gathered.reshape(-1, *per_host.shape[1:])
    keep = ~np.isnan(gathered.reshape(len(gathered), -1)[:, 0])
    return gathered[keep]


def evaluate_source(state, source, config, *, box: str | None = None, decoder: str | None = None,
                    norm: str | None = None, flip_test: bool = False,
                    batch_size: int | None = None, conv_lowering: str | None = None,
                    infer=None) -> dict:
    """Evaluates a model on every record of ``source``.

    ``infer``: a function from :func:`make_inference_fn` to reuse (a training run evaluates
    many times; building it anew would recompile each time); by default one is built here
    with ``decoder``, ``flip_test`` and ``conv_lowering``.

    Returns the summary (``nme``, ``failure_rate``, ``auc`` at ``config.failure_threshold``,
    ``num_images``) plus per-image arrays ``nmes`` (N,), ``indices`` (N,) and ``predictions``
    (N, L, 2) in the original photo's pixels.
    """
    scheme = get_scheme(config.scheme)
    norm = norm or config.norm
    infer = infer or make_inference_fn(config, decoder=decoder, flip_test=flip_test,
                                       conv_lowering=conv_lowering)
    variables = model_variables(state)
    nmes, indices, predictions = [], [], []
    for batch in input_pipeline.eval_batches(
            source, config, batch_size=batch_size or config.eval_batch_size,
            box=box or config.eval_box, shard_index=jax.process_index(),
            shard_count=jax.process_count()):
        pred = np.asarray(infer(variables, batch["image"]), dtype=np.float64)
        valid = batch["valid"]
        nme = metrics.nme(pred, batch["landmarks"], scheme=scheme, norm=norm,
                          boxes=batch["box"], visible=batch["visible"])
        to_original = batch["to_original"]
        photo = np.einsum("bij,blj->bli", to_original[:, :, :2], pred) + to_original[:, None, :, 2]
        nmes.append(np.asarray(nme)[valid])
        indices.append(batch["index"][valid])
        predictions.append(photo[valid])
    total = len(source)
    nmes = _gather_hosts(np.concatenate(nmes), total)
    indices = _gather_hosts(np.concatenate(indices).astype(np.float64), total).astype(np.int64)
    predictions = _gather_hosts(np.concatenate(predictions), total)
    return {**summarise(nmes, config.failure_threshold), "nmes": nmes, "indices": indices,
            "predictions": predictions}


def mean_shape_baseline(train_source, eval_source, config, *, box: str | None = None,
                        norm: str | None = None) -> dict:
    """Scores the trivial predictor: the training set's mean shape in the face square.

    A trained model must beat it clearly; the demo prints both. Only landmarks and boxes are
    read: no image is decoded.
    """
    scheme = get_scheme(config.scheme)
    kw = {"input_size": config.input_size, "box_scale": config.box_scale,
          "box": box or config.eval_box, "crop_protocol": input_pipeline.protocol_of(config)}

    def geometry(source):
        faces = [input_pipeline.eval_geometry(source[i], **kw)[1] for i in range(len(source))]
        return {k: np.stack([f[k] for f in faces]) for k in faces[0]}

    train = geometry(train_source)
    visible = train["visible"][..., None]
    mean_shape = (np.sum(np.where(visible, train["landmarks"], 0.0), axis=0)
                  / np.maximum(np.sum(visible, axis=0), 1))
    test = geometry(eval_source)
    nmes = metrics.nme(np.broadcast_to(mean_shape, test["landmarks"].shape), test["landmarks"],
                       scheme=scheme, norm=norm or config.norm, boxes=test["box"],
                       visible=test["visible"])
    return summarise(np.asarray(nmes), config.failure_threshold)
