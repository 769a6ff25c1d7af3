"""Figures about the method, written as PNG files.

Command line (one subcommand per figure)::

    python -m awing_jax.plots loss-shapes OUT.png
    python -m awing_jax.plots gradients OUT.png      # also prints the gradient table

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
    pred = np.asarray(target + np.asarray(errors), np.float32)
    target = np.full_like(pred, target)
    value, gradient = jax.jit(lambda p, t: (loss_fn(p, t), jax.vmap(jax.grad(loss_fn))(p, t)))(
        pred, target)  # one program, not one per operation
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


def _gradient_curves() -> list[tuple[str, object, float, dict]]:
    """(label, loss_fn, target, style) of every loss of :func:`plot_gradients`, in heatmap units.

    The coordinate losses (Wing, smooth L1 with beta = 1 px) are rescaled like Wing in
    :func:`plot_loss_shapes`; L1's and L2's gradients do not depend on a scale at all.
    """
    scale = _WING_PIXELS_PER_UNIT
    return [
        ("L2", losses.l2_loss, 0.0, dict(color="0.2", lw=1.4, ls=":")),
        ("L1", losses.l1_loss, 0.0, dict(color="0.45", lw=1.4, ls="--")),
        ("smooth L1", lambda p, t: losses.smooth_l1_loss(p, t, beta=1.0 / scale), 0.0,
         dict(color="#b08d00", lw=1.4, ls=(0, (5, 1, 1, 1)))),
        ("Wing", lambda p, t: losses.wing_loss(p, t, w=_WING_W / scale,
                                               epsilon=_WING_EPSILON / scale),
         0.0, dict(color="#8e44ad", lw=1.6, ls="-.")),
        *[(f"AWing, y = {y:g}", losses.adaptive_wing_loss, y, dict(color=color, lw=2.2))
          for y, color in ((0.0, "#1f3b73"), (0.5, "#2a9d8f"), (1.0, "#e76f51"))],
    ]


TABLE_ERRORS = (1.0, 0.3, 0.1, 0.01, 1e-3, 1e-4)


DESCENT_STEPS, DESCENT_LEARNING_RATE = 120, 0.01


def gradient_descent(loss_fn, target: float, *, start: float = 0.2,
                     learning_rate: float = DESCENT_LEARNING_RATE,
                     steps: int = DESCENT_STEPS) -> np.ndarray:
    """Error (steps + 1,) of plain gradient descent on one prediction, from ``target + start``.

    A loss whose gradient stays large as the error vanishes (L1, Wing) overshoots 0 at every
    step and oscillates around it with an amplitude of about ``learning_rate * |gradient|``; one
    whose gradient vanishes with the error (L2, AWing at y = 0) settles.
    """
    grad = jax.grad(lambda p: loss_fn(p, jnp.float32(target)))

    def step(p, _):
        p = p - learning_rate * grad(p)
        return p, p

    _, path = jax.lax.scan(step, jnp.float32(target + start), None, length=steps)
    return np.concatenate([[start], np.asarray(path) - target])


def gradient_table(errors: Sequence[float] = TABLE_ERRORS) -> dict[str, np.ndarray]:
    """Per loss: |d loss / d prediction| (by jax.grad) at each error (heatmap units), then, over
    the last 20 steps of :func:`gradient_descent`, the largest |error| and the number of sign
    changes of the error (oscillation around the target)."""
    errors = np.asarray(errors, np.float64)
    table = {}
    for label, loss_fn, target, _ in _gradient_curves():
        tail = gradient_descent(loss_fn, target)[-20:]
        table[label] = np.concatenate([np.abs(_loss_and_gradient(loss_fn, target, errors)[1]),
                                       [np.abs(tail).max(), np.sum(tail[1:] * tail[:-1] < 0)]])
    return table


def format_gradient_table(table: dict[str, np.ndarray],
                          errors: Sequence[float] = TABLE_ERRORS) -> str:
    """A Markdown table of :func:`gradient_table`: one row per loss."""
    head = ("| loss | " + " | ".join(f"d = {e:g}" for e in errors)
            + " | descent: max abs(d) | descent: sign flips |")
    rule = "|---|" + "---:|" * (len(errors) + 2)
    rows = [f"| {label} | " + " | ".join(f"{g:.3g}" for g in values) + " |"
            for label, values in table.items()]
    return "\n".join([head, rule, *rows])


def plot_gradients(path: str | pathlib.Path) -> pathlib.Path:
    """Why Adaptive Wing "stays converged": gradient magnitude as the error goes to zero.

    Left: |d loss / d prediction| (jax.grad) against the error on log-log axes. L1's gradient
    stays 1 and Wing's grows to w / epsilon = 5 as the error vanishes, so a fixed-step optimiser
    keeps kicking a converged prediction; L2's, smooth L1's and Adaptive Wing's fall to 0, for
    AWing at a rate set by the target: d^1.1 on background (y = 0), the vast majority of pixels,
    but d^0.1 on the landmark peak (y = 1), which keeps Wing's strong pull on small foreground
    errors. Right: the consequence, the signed error of plain gradient descent (learning rate
    0.01) on one prediction from an error of 0.2.
    Writes a PNG to ``path`` (parent folders created) and returns the path.
    """
    path = pathlib.Path(path)
    errors = np.logspace(-4, 0, 400)
    fig = Figure(figsize=(12, 5), dpi=110, layout="constrained")
    grad_ax, descent_ax = fig.subplots(1, 2)
    for label, loss_fn, target, style in _gradient_curves():
        gradient = np.abs(_loss_and_gradient(loss_fn, target, errors)[1])
        grad_ax.plot(errors, np.maximum(gradient, 1e-8), label=label, **style)
        descent_ax.plot(gradient_descent(loss_fn, target), label=label,
                        **{**style, "lw": style["lw"] * 0.7})
    grad_ax.set_xscale("log")
    grad_ax.set_yscale("log")
    grad_ax.set_ylim(1e-6, 1e2)
    grad_ax.set_xlabel("|error| = |prediction − target| (heatmap units; Wing, smooth L1 at "
                       f"{_WING_PIXELS_PER_UNIT:g} px per unit)")
    grad_ax.set_ylabel("|∂loss / ∂prediction|")
    grad_ax.set_title("Gradient magnitude as the error → 0")
    descent_ax.axhline(0.0, color="0.6", lw=1)
    descent_ax.set_xlim(0, DESCENT_STEPS)
    descent_ax.set_xlabel(f"gradient-descent step (learning rate {DESCENT_LEARNING_RATE:g})")
    descent_ax.set_ylabel("error = prediction − target")
    descent_ax.set_title("L1, Wing (and AWing on the peak) oscillate; AWing on background settles")
    for ax in (grad_ax, descent_ax):
        ax.grid(alpha=0.3, which="both")
    grad_ax.legend(loc="lower right", fontsize=9)
    fig.suptitle("Gradients by jax.grad: AWing (α = 2.1, ω = 14, ε = 1, θ = 0.5), Wing "
                 f"(w = {_WING_W:g}, ε = {_WING_EPSILON:g} px), smooth L1 (β = 1 px), L1, L2")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _gradients_command(args: argparse.Namespace) -> None:
    print("|d loss / d prediction| against the error d (heatmap units); gradient descent from "
          f"d = 0.2 at learning rate {DESCENT_LEARNING_RATE:g}: its last 20 of {DESCENT_STEPS} "
          "steps")
    print(format_gradient_table(gradient_table()))
    print(plot_gradients(args.out))


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one subcommand per figure, each bound to its function through ``run``."""
    parser = argparse.ArgumentParser(prog="python -m awing_jax.plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="figure", required=True)
    loss_shapes = commands.add_parser(
        "loss-shapes", help="AWing, Wing, L1, L2 and their gradients against the error")
    loss_shapes.add_argument("out", type=pathlib.Path, help="PNG file to write")
    loss_shapes.set_defaults(run=_loss_shapes_command)
    gradients = commands.add_parser(
        "gradients", help="gradient magnitudes as the error vanishes, and gradient descent "
        "with each loss (prints a table of the gradients)")
    gradients.add_argument("out", type=pathlib.Path, help="PNG file to write")
    gradients.set_defaults(run=_gradients_command)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
