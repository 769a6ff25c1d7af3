"""Figures about the method, written as PNG files.

Command line (one subcommand per figure)::

    python -m awing_jax.plots loss-shapes OUT.png

Figures are drawn on a bare :class:`matplotlib.figure.Figure` rendered by the Agg canvas, never
through pyplot, so they need no display and leave the caller's matplotlib backend alone.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from awing_jax import losses

# Wing loss is defined in pixels (w = 10, ε = 2) and is scale-equivariant:
# Wing_{w,ε}(s·d) / s = Wing_{w/s,ε/s}(d). At s = 2w pixels per unit of heatmap error its switch
# |x| = w falls at d = 0.5, on AWing's θ, so the two shapes can share one axis.
_WING_W, _WING_EPSILON = 10.0, 2.0
_WING_PIXELS_PER_UNIT = 2 * _WING_W


def _loss_and_gradient(loss_fn, target: float, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loss and ∂loss/∂prediction (by jax.grad) at prediction = target + error, for each error."""
    pred = jnp.asarray(target + errors, jnp.float32)
    target = jnp.full_like(pred, target)
    value = loss_fn(pred, target)
    gradient = jax.vmap(jax.grad(loss_fn))(pred, target)
    return np.asarray(value), np.asarray(gradient)


def plot_loss_shapes(path: str | pathlib.Path) -> pathlib.Path:
    """Draws the losses (left) and their gradients w.r.t. the prediction (right) against the error.

    Adaptive Wing at targets y = 0, 0.5, 1 (AWing paper, Fig. 3), Wing rescaled to heatmap units,
    L1 and L2. Writes a PNG to ``path`` (parent folders created) and returns the path.
    """
    path = pathlib.Path(path)
    # Start just above 0: at d = 0 itself AWing's gradient is its limit 0 for every y, a single
    # point that would draw a misleading vertical drop on the y = 1 curve.
    errors = np.linspace(0.0, 1.0, 1001)[1:]
    scale = _WING_PIXELS_PER_UNIT
    curves = [
        *[(f"AWing, y = {y:g}", losses.adaptive_wing_loss, y, dict(color=color, lw=2.2))
          for y, color in ((0.0, "#1f3b73"), (0.5, "#2a9d8f"), (1.0, "#e76f51"))],
        (f"Wing (w = {_WING_W:g}, ε = {_WING_EPSILON:g} px) at x = {scale:g}·d px, ÷ {scale:g}",
         lambda p, t: losses.wing_loss(p, t, w=_WING_W / scale, epsilon=_WING_EPSILON / scale),
         0.0, dict(color="#8e44ad", lw=1.6, ls="-.")),
        ("L1", losses.l1_loss, 0.0, dict(color="0.45", lw=1.4, ls="--")),
        ("L2 (MSE)", losses.l2_loss, 0.0, dict(color="0.2", lw=1.4, ls=":")),
    ]

    fig = Figure(figsize=(12, 5), dpi=110, layout="constrained")
    loss_ax, grad_ax = fig.subplots(1, 2)
    for label, loss_fn, target, style in curves:
        value, gradient = _loss_and_gradient(loss_fn, target, errors)
        loss_ax.plot(errors, value, label=label, **style)
        grad_ax.plot(errors, gradient, label=label, **style)

    theta = 0.5
    for ax in (loss_ax, grad_ax):
        ax.axvline(theta, color="0.6", lw=1, ls=(0, (2, 2)), label=f"θ = {theta:g}: AWing switch")
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("error d = prediction − target (heatmap units)")
        ax.grid(alpha=0.3)
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("Loss")
    grad_ax.set_ylabel("∂loss / ∂prediction")
    grad_ax.set_title("Gradient (jax.grad): vanishes near 0 for y = 0, stays large for y = 1")
    loss_ax.legend(loc="upper left", fontsize=9)
    fig.suptitle("Adaptive Wing loss (α = 2.1, ω = 14, ε = 1, θ = 0.5) against Wing, L1 and L2")

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _loss_shapes_command(args: argparse.Namespace) -> None:
    print(plot_loss_shapes(args.out))


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one subcommand per figure, each bound to its function through ``run``."""
    parser = argparse.ArgumentParser(prog="python -m awing_jax.plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="figure", required=True)
    loss_shapes = commands.add_parser(
        "loss-shapes", help="AWing, Wing, L1, L2 and their gradients against the error")
    loss_shapes.add_argument("out", type=pathlib.Path, help="PNG file to write")
    loss_shapes.set_defaults(run=_loss_shapes_command)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
