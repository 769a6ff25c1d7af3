"""The one inference path: uint8 face crops -> the model's heatmaps and landmarks.

    result = infer(model, variables, images, decoder="subpixel")
    result.landmarks   # (B, L, 2) float32 (x, y) input pixels
    result.heatmaps    # every stack's (B, S/s, S/s, C), or None for a coordinate regressor

Evaluation (:func:`awing_jax.evaluation.make_inference_fn`), export
(:func:`awing_jax.export.landmark_function`) and prediction (:class:`awing_jax.predict.Predictor`)
call :func:`infer`; the training step, which has its outputs already, decodes them with
:func:`landmarks_from_outputs`. The heatmap stride ``s`` is the model's own
(:attr:`awing_jax.models.fan.FAN.heatmap_stride`). Pixel conventions: docs/conventions.md.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from awing_jax.decode import decode_heatmaps
from awing_jax.landmarks import flip_landmarks, require_flip_permutation


class Inference(NamedTuple):
    """What :func:`infer` returns (a pytree: it passes through ``jax.jit``)."""

    landmarks: jax.Array  # (B, L, 2) float32 input pixels
    heatmaps: list | None  # per stack (B, S/s, S/s, C) float32; None for coordinate regressors


def model_inputs(images, dtype) -> jax.Array:
    """uint8 images -> the model's input: ``images / 255`` in ``dtype``, in [0, 1]."""
    return images.astype(dtype) / 255.0


def landmarks_from_outputs(model, outputs, *, decoder: str) -> jax.Array:
    """Landmarks (B, L, 2) in input pixels from ``model``'s outputs.

    A coordinate regressor's outputs are the landmarks; a heatmap model's last stack is decoded
    (its boundary channel, the last, left out) with ``decoder`` ("subpixel" or "reference",
    :func:`awing_jax.decode.decode_heatmaps`) at the model's stride.
    """
    if not isinstance(outputs, list | tuple):
        return outputs
    heatmaps = outputs[-1]
    if model.boundary:
        heatmaps = heatmaps[..., :-1]
    return decode_heatmaps(heatmaps, stride=model.heatmap_stride, mode=decoder)


def unflip_heatmaps(heatmaps, scheme, *, boundary: bool):
    """Maps the heatmaps of a mirrored image back onto the original image.

    Mirroring the input (x -> S-1-x) mirrors heatmap columns exactly (pixel j <-> W-1-j, because
    heatmap pixel j is centred on input pixel s*j + (s-1)/2) and swaps left/right landmark
    channels (the scheme's flip permutation); the boundary channel maps onto itself.
    """
    perm = list(require_flip_permutation(scheme))
    if boundary:
        perm.append(len(perm))
    return heatmaps[:, :, ::-1, :][..., np.asarray(perm)]


def infer(model, variables, images, *, decoder: str, flip_test: bool = False,
          scheme=None) -> Inference:
    """The model in inference mode (BatchNorm running averages) on uint8 crops.

    Args:
      model: a FAN or a coordinate regressor (:func:`awing_jax.models.create_model`).
      variables: ``{"params", "batch_stats"}``.
      images: (B, S, S, 3) uint8 RGB crops; they enter the model as ``images / 255`` in the
        model's dtype.
      decoder: heatmap decoder, see :func:`landmarks_from_outputs`.
      flip_test: also run the mirrored crops and average with them, mapped back onto the crops:
        every stack's heatmaps (heatmap models) or the landmarks (regressors). Needs ``scheme``.
      scheme: the landmark scheme (name, definition or object) whose flip permutation maps the
        mirror image's points back.

    Returns:
      :class:`Inference`. Jittable (``model``, ``decoder``, ``flip_test`` and ``scheme`` static).
    """
    x = model_inputs(images, model.dtype)
    outputs = model.apply(variables, x, train=False)
    if flip_test:
        if scheme is None:
            raise ValueError("flip_test needs the landmark scheme (its flip permutation)")
        mirrored = model.apply(variables, x[:, :, ::-1, :], train=False)
        if isinstance(outputs, list | tuple):
            outputs = [0.5 * (o + unflip_heatmaps(m, scheme, boundary=model.boundary))
                       for o, m in zip(outputs, mirrored, strict=True)]
        else:
            outputs = 0.5 * (outputs + flip_landmarks(mirrored, x.shape[2], scheme))
    heatmaps = list(outputs) if isinstance(outputs, list | tuple) else None
    return Inference(landmarks_from_outputs(model, outputs, decoder=decoder), heatmaps)
