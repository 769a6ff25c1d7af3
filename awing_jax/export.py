"""A checkpoint as one self-contained, batch-polymorphic function, serialized with ``jax.export``.

    python -m awing_jax.export --checkpoint runs/wflw --out wflw.jaxexport   # or awing-export
    python predict.py --export wflw.jaxexport --image photo.jpg --box 120,80,360,330

The exported function maps face crops to landmarks:

    images uint8 (B, S, S, 3) -> (landmarks float32 (B, L, 2) in input pixels,
                                  heatmaps float32 (B, S/s, S/s, C) of the last stack)

(s the model's heatmap stride)

with ``B`` symbolic, so one artifact serves any batch size. ``C`` is L + 1 with the boundary
channel last (L without one); a coordinate-regression model returns no heatmaps (None).
Landmarks are decoded inside with the checkpoint's decoder.

The weights are baked into the module as constants: the artifact is a single file that needs
neither the model code nor a checkpoint, at the price of its size (about 97 MB for the paper's
24M-parameter model, the size of its float32 weights). It is lowered for CPU and CUDA by default.

A JSON sidecar ``<out>.json`` holds what a caller needs to crop faces the way the model expects
(``input_size``, ``box_scale``, ``crop_protocol``: see :mod:`awing_jax.crop`; artifacts without
it crop face squares) and to read the output (``scheme``, ``num_landmarks``,
``scheme_definition``: the whole landmark scheme, point names included for schemes from the data,
``boundary``, ``decoder``); :class:`awing_jax.predict.Predictor` reads both files.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp

from awing_jax import checkpoint, inference
from awing_jax.landmarks import get_scheme
from awing_jax.models import create_model

FORMAT = "awing-jax-export-1"
# Platforms lowered by default: the artifact then runs on a CPU and on an NVIDIA GPU.
DEFAULT_PLATFORMS = ("cpu", "cuda")
# Convolution lowering of exported (and predicting) programs: single photos and small batches,
# where compile time weighs more than step time (BENCHMARKS.md, "Convolution lowering").
DEFAULT_CONV_LOWERING = "matmul"


def landmark_function(config, *, conv_lowering: str = DEFAULT_CONV_LOWERING):
    """``fn(variables, images)``: uint8 (B, S, S, 3) face crops -> (landmarks, heatmaps).

    :func:`awing_jax.inference.infer` with the config's model and decoder: landmarks (B, L, 2) in
    input pixels, decoded from the last stack with ``config.decoder``; heatmaps (B, S/s, S/s, C)
    that stack's raw output (None for a model that regresses coordinates). The function both
    :class:`awing_jax.predict.Predictor` runs and :func:`export_function` serializes;
    ``conv_lowering`` is how its convolutions run (:mod:`awing_jax.models.conv`).
    """
    model = create_model(config, bn_axis_name=None, conv_lowering=conv_lowering)

    def fn(variables, images):
        result = inference.infer(model, variables, images, decoder=config.decoder)
        return result.landmarks, None if result.heatmaps is None else result.heatmaps[-1]

    return fn


def metadata(config) -> dict:
    """What a caller of the exported function must know, from the run's config."""
    return {
        "format": FORMAT,
        "input_size": int(config.input_size),
        "box_scale": float(config.box_scale),
        "crop_protocol": config.get("crop_protocol", "face_square"),
        "scheme": get_scheme(config.scheme).name,
        "num_landmarks": get_scheme(config.scheme).num_landmarks,
        "scheme_definition": get_scheme(config.scheme).to_dict(),
        "boundary": bool(config.model.boundary),
        "decoder": config.decoder,
        "num_stacks": int(config.model.num_stacks),
    }


def export_function(config, variables, *, platforms=DEFAULT_PLATFORMS,
                    conv_lowering: str = DEFAULT_CONV_LOWERING) -> jax.export.Exported:
    """:func:`landmark_function` with ``variables`` baked in, for a symbolic batch size."""
    fn = landmark_function(config, conv_lowering=conv_lowering)
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    (batch,) = jax.export.symbolic_shape("batch")
    size = config.input_size
    images = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8)
    return jax.export.export(jax.jit(lambda x: fn(variables, x)), platforms=platforms)(images)


def sidecar_path(path: str) -> str:
    return path + ".json"


def save(exported: jax.export.Exported, meta: dict, path: str) -> None:
    """Writes the serialized function to ``path`` and ``meta`` to ``path + ".json"``."""
    with open(path, "wb") as f:
        f.write(exported.serialize())
    with open(sidecar_path(path), "w") as f:
        json.dump(meta, f, indent=1)


def load(path: str):
    """``(fn, meta)``: the jitted ``fn(images uint8 (B, S, S, 3)) -> (landmarks, heatmaps)`` of
    an exported model and its sidecar metadata."""
    try:
        with open(path, "rb") as f:
            exported = jax.export.deserialize(bytearray(f.read()))
        with open(sidecar_path(path)) as f:
            meta = json.load(f)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"exported model incomplete: no such file {e.filename}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{sidecar_path(path)}: format {meta.get('format')!r}, expected {FORMAT}")
    return jax.jit(exported.call), meta


def export_checkpoint(checkpoint_dir: str, out: str, *, step: str | int = "best",
                      platforms=DEFAULT_PLATFORMS,
                      conv_lowering: str = DEFAULT_CONV_LOWERING) -> dict:
    """Exports checkpoint ``step`` of ``checkpoint_dir`` (a workdir) to ``out``; returns the
    metadata written beside it."""
    manager = checkpoint.create_manager(checkpoint_dir, read_only=True)
    step = checkpoint.resolve_step(manager, step)
    config = checkpoint.restore_config(manager, step)
    variables = checkpoint.restore_variables(manager, step)
    meta = {**metadata(config), "checkpoint_step": int(step), "conv_lowering": conv_lowering}
    save(export_function(config, variables, platforms=platforms, conv_lowering=conv_lowering),
         meta, out)
    return meta


if __name__ == "__main__":
    from awing_jax.cli.export import run

    run()
