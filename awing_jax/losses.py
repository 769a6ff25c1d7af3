"""Losses for heatmap and coordinate regression.

Elementwise losses take ``pred`` and ``target`` of any (broadcastable) shape and return the loss per
element, with no reduction, in the dtype of the inputs. They compute in at least float32 so that a
bfloat16 network still gets accurate losses and gradients, and they are safe under ``jax.grad``
everywhere (finite gradients at zero error included).

- :func:`adaptive_wing_loss`: the Adaptive Wing loss (Wang, Bo, Fuxin, ICCV 2019, Eq. 6).
- :func:`wing_loss`: the Wing loss (Feng et al., CVPR 2018, Eq. 5), for coordinate differences.
- :func:`l2_loss`, :func:`l1_loss`, :func:`smooth_l1_loss`: the usual baselines.

:func:`loss_weight_map` is the Weighted Loss Map (AWing paper, Sec. 4.2) and :func:`heatmap_loss`
the training objective: an elementwise loss, weighted, averaged and summed over the hourglass
stacks (intermediate supervision). :func:`coordinate_loss` is the objective of coordinate
regression (Wing paper): an elementwise loss on each x and y of the visible landmarks, averaged.
Formulas and constants: docs/losses.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp


def _compute_dtypes(pred, target) -> tuple[jax.Array, jax.Array, jnp.dtype]:
    """Returns ``pred`` and ``target`` in a compute dtype of at least float32, and the output dtype.

    The output dtype is the inputs' common floating dtype (float32 for integer inputs), so bfloat16
    in gives bfloat16 out while the arithmetic itself runs in float32.
    """
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    out_dtype = jnp.result_type(pred, target)
    if not jnp.issubdtype(out_dtype, jnp.floating):
        out_dtype = jnp.dtype(jnp.float32)
    compute = jnp.promote_types(out_dtype, jnp.float32)
    return pred.astype(compute), target.astype(compute), out_dtype


def _magnitude(x: jax.Array) -> jax.Array:
    """``|x|`` with derivative ``sign(x)``, so 0 at ``x = 0``.

    ``jnp.abs`` differentiates to 1 at 0; for a loss symmetric in the error the symmetric
    subgradient 0 is the right one at zero error (a non-zero one pushes a perfect prediction away).
    """
    return x * jax.lax.stop_gradient(jnp.sign(x))


def adaptive_wing_loss(pred, target, *, alpha: float = 2.1, omega: float = 14.0,
                       epsilon: float = 1.0, theta: float = 0.5) -> jax.Array:
    """Adaptive Wing loss per element (AWing paper, Eq. 6).

    With ``y = target``, ``d = |y - pred|`` and ``p = alpha - y``::

        AWing(y, pred) = omega * ln(1 + (d / epsilon)^p)    if d < theta
                       = A * d - C                          otherwise
        A = omega * (1 / (1 + (theta/epsilon)^p)) * p * (theta/epsilon)^(p - 1) * (1 / epsilon)
        C = theta * A - omega * ln(1 + (theta/epsilon)^p)

    A and C depend on y, so they are per element; they make the loss and its first derivative
    continuous at ``d = theta``. For background (y = 0) the loss behaves like ``d^2.1`` near zero
    (vanishing gradient), for foreground (y = 1) like ``d^1.1`` (a large gradient for small errors).

    Args:
      pred: predicted heatmap, any shape, e.g. (B, H, W, C).
      target: ground-truth heatmap with values in [0, 1], broadcastable with ``pred``.
      alpha, omega, epsilon, theta: the paper's hyper-parameters (defaults from the paper).

    Returns:
      The loss per element, shape of ``pred - target``, in the inputs' dtype. Differentiable with
      finite gradients everywhere, including ``d = 0``.
    """
    pred, target, out_dtype = _compute_dtypes(pred, target)
    d = _magnitude(pred - target)
    p = alpha - target
    ratio_p = jnp.power(theta / epsilon, p)
    # (θ/ε)^(p−1) · (1/ε) = (θ/ε)^p / θ: one power instead of two.
    a = omega * p * ratio_p / ((1.0 + ratio_p) * theta)
    c = theta * a - omega * jnp.log1p(ratio_p)
    near = d < theta
    # At d = 0 the base of (d/ε)^p is 0: the derivative p·(d/ε)^(p−1) is 0 for p > 1 but infinite
    # for p < 1 (a target above α − 1), and jnp.where back-propagates through the branch it does
    # not select (0·inf = NaN). So the power only ever sees a positive base, and its limit 0 is
    # selected at d = 0. Outside the log branch the base is 1, so a huge error cannot overflow it.
    base = jnp.where(near & (d > 0), d / epsilon, 1.0)
    power = jnp.where(d > 0, jnp.power(base, p), 0.0)
    loss = jnp.where(near, omega * jnp.log1p(power), a * d - c)
    return loss.astype(out_dtype)


def wing_loss(pred, target, *, w: float = 10.0, epsilon: float = 2.0) -> jax.Array:
    """Wing loss per element of the coordinate difference (Wing paper, Eq. 5).

    With ``x = pred - target``::

        wing(x) = w * ln(1 + |x| / epsilon)    if |x| < w
                = |x| - C                      otherwise,   C = w - w * ln(1 + w / epsilon)

    Args:
      pred: predicted coordinates, any shape, e.g. (B, L, 2), x and y as separate elements.
      target: ground-truth coordinates, broadcastable with ``pred``, same units as ``w`` and
        ``epsilon`` (the paper: pixels of a 64×64 input, w = 10, epsilon = 2).

    Returns:
      The loss per element, in the inputs' dtype.
    """
    pred, target, out_dtype = _compute_dtypes(pred, target)
    x = _magnitude(pred - target)
    c = w - w * jnp.log1p(w / epsilon)
    loss = jnp.where(x < w, w * jnp.log1p(x / epsilon), x - c)
    return loss.astype(out_dtype)


def l2_loss(pred, target) -> jax.Array:
    """Squared error ``(pred - target)^2`` per element (the MSE baseline before averaging)."""
    pred, target, out_dtype = _compute_dtypes(pred, target)
    return jnp.square(pred - target).astype(out_dtype)


def l1_loss(pred, target) -> jax.Array:
    """Absolute error ``|pred - target|`` per element."""
    pred, target, out_dtype = _compute_dtypes(pred, target)
    return _magnitude(pred - target).astype(out_dtype)


def smooth_l1_loss(pred, target, *, beta: float = 1.0) -> jax.Array:
    """Smooth L1 (Huber-style) loss per element, with ``x = pred - target``::

        smooth_l1(x) = 0.5 * x^2 / beta    if |x| < beta
                     = |x| - 0.5 * beta    otherwise

    Args:
      beta: the switch point, > 0 (``l1_loss`` is the beta -> 0 limit).
    """
    if beta <= 0:
        raise ValueError(f"smooth_l1_loss needs beta > 0, got {beta}; use l1_loss for beta = 0")
    pred, target, out_dtype = _compute_dtypes(pred, target)
    x = _magnitude(pred - target)
    loss = jnp.where(x < beta, 0.5 * jnp.square(x) / beta, x - 0.5 * beta)
    return loss.astype(out_dtype)


LOSSES: dict[str, Callable[..., jax.Array]] = {
    "awing": adaptive_wing_loss,
    "wing": wing_loss,
    "l2": l2_loss,
    "l1": l1_loss,
    "smooth_l1": smooth_l1_loss,
}
"""Elementwise losses by name, for configs."""


def loss_weight_map(target, *, weight: float = 10.0, threshold: float = 0.2,
                    kernel_size: int = 3) -> jax.Array:
    """Weighted Loss Map ``W * M + 1`` (AWing paper, Sec. 4.2).

    ``M = 1`` where the grey dilation of the target heatmap with a ``kernel_size × kernel_size``
    square is ``>= threshold``, else 0, per channel. Foreground pixels and the "difficult
    background" next to them weigh ``W + 1`` (11 by default), the rest 1. Outside the map the
    target counts as 0 (``scipy.ndimage.grey_dilation`` with ``mode="constant", cval=0``).

    Args:
      target: ground-truth heatmaps, (..., H, W, C), e.g. (B, H, W, C); floating dtype.
      weight: W.
      threshold: the dilated-heatmap value from which a pixel counts as foreground.
      kernel_size: side of the square dilation window; an even size extends one pixel further
        down/right than up/left, as in scipy.

    Returns:
      (..., H, W, C) weights in the dtype of ``target``. Constant with respect to the target: no
      gradient flows through it.
    """
    target = jax.lax.stop_gradient(jnp.asarray(target))
    if target.ndim < 3:
        raise ValueError(f"expected (..., H, W, C) heatmaps, got shape {target.shape}")
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    lead = target.ndim - 3
    # Pad explicitly with zeros rather than through reduce_window: its init value takes part in
    # every window, so an init of 0 would also clip negative values inside the map.
    before, after = (kernel_size - 1) // 2, kernel_size // 2
    padded = jnp.pad(target, [(0, 0)] * lead + [(before, after), (before, after), (0, 0)])
    dilated = jax.lax.reduce_window(
        padded,
        jnp.array(-jnp.inf, target.dtype),
        jax.lax.max,
        window_dimensions=(1,) * lead + (kernel_size, kernel_size, 1),
        window_strides=(1,) * target.ndim,
        padding="VALID",
    )
    return jnp.where(dilated >= threshold, weight + 1.0, 1.0).astype(target.dtype)


_WEIGHT_MAP_KWARGS = ("weight", "threshold", "kernel_size")


def heatmap_loss(stack_outputs: Sequence[jax.Array], target, *, kind: str = "awing",
                 use_weight_map: bool = True, mask=None, **kwargs) -> jax.Array:
    """The heatmap training objective with intermediate supervision.

    ``sum over stacks s of mean(loss(stack_outputs[s], target) * weights)``, equal stack weights,
    where ``weights = loss_weight_map(target)`` (or 1) and the mean runs over all B·H·W·C elements,
    or, with a ``mask``, ``sum(loss * weights * mask) / sum(mask)`` over the broadcast mask.

    Args:
      stack_outputs: per-stack predictions, each (B, H, W, C) (C = landmarks + boundary channel).
      target: ground-truth heatmaps, (B, H, W, C).
      kind: the elementwise loss, a key of :data:`LOSSES`.
      use_weight_map: multiply by :func:`loss_weight_map` of the target (AWing paper, Sec. 4.2).
      mask: optional weights broadcastable to (B, 1, 1, C), e.g. 0 for landmarks that are not
        annotated. A fully masked batch gives a loss of 0.
      **kwargs: ``weight``, ``threshold`` and ``kernel_size`` go to :func:`loss_weight_map`
        (ignored when ``use_weight_map`` is False, so ablation configs can keep them); everything
        else goes to the elementwise loss (e.g. ``alpha``, ``theta`` for "awing").

    Returns:
      A float32 scalar.
    """
    try:
        loss_fn = LOSSES[kind]
    except KeyError:
        raise ValueError(f"unknown loss kind {kind!r}; known: {sorted(LOSSES)}") from None
    map_kwargs = {k: kwargs.pop(k) for k in _WEIGHT_MAP_KWARGS if k in kwargs}
    if len(stack_outputs) == 0:
        raise ValueError("heatmap_loss needs at least one stack output")

    target = jax.lax.stop_gradient(jnp.asarray(target))
    # Reduce in at least float32: a bfloat16 sum over B·64·64·(L+1) elements would lose digits.
    compute = jnp.promote_types(target.dtype, jnp.float32)
    target = target.astype(compute)
    weights = loss_weight_map(target, **map_kwargs) if use_weight_map else jnp.ones((), compute)
    if mask is None:
        denominator = jnp.asarray(target.size, compute)
    else:
        mask = jnp.broadcast_to(jnp.asarray(mask, compute), target.shape)
        weights = weights * mask
        denominator = jnp.sum(mask)

    total = jnp.zeros((), compute)
    for s, pred in enumerate(stack_outputs):
        pred = jnp.asarray(pred)
        if pred.shape != target.shape:
            raise ValueError(f"stack {s}: prediction shape {pred.shape} != target shape "
                             f"{target.shape}")
        total = total + jnp.sum(loss_fn(pred.astype(compute), target, **kwargs) * weights)
    safe = jnp.where(denominator > 0, denominator, 1.0)
    return jnp.where(denominator > 0, total / safe, 0.0).astype(jnp.float32)


COORDINATE_LOSSES = ("l2", "l1", "smooth_l1", "wing")
"""The :data:`LOSSES` that apply to coordinate differences (Adaptive Wing needs a target in
[0, 1])."""


def coordinate_loss(pred, target, *, kind: str = "wing", mask=None, **kwargs) -> jax.Array:
    """The coordinate-regression objective: ``mean(loss(pred, target))`` over the visible elements.

    Each of x and y is one element, as the Wing paper applies its loss to every element of the
    coordinate difference vector (Eq. 5), so the mean runs over B·L·2 elements, or with a
    ``mask`` over the 2·sum(mask) visible ones.

    Args:
      pred: predicted landmarks (B, L, 2).
      target: ground truth (B, L, 2), in the units the loss's parameters are given in.
      kind: one of :data:`COORDINATE_LOSSES`.
      mask: optional (B, L) weights, e.g. 0 for landmarks that are not annotated. A fully masked
        batch gives a loss of 0.
      **kwargs: the elementwise loss's parameters (``w``, ``epsilon`` for "wing"; ``beta`` for
        "smooth_l1").

    Returns:
      A float32 scalar.
    """
    if kind not in COORDINATE_LOSSES:
        raise ValueError(f"unknown coordinate loss {kind!r}; known: {list(COORDINATE_LOSSES)}")
    target = jax.lax.stop_gradient(jnp.asarray(target))
    pred = jnp.asarray(pred)
    if pred.shape != target.shape or pred.shape[-1:] != (2,):
        raise ValueError(f"expected (..., L, 2) prediction and target of one shape, got "
                         f"{pred.shape} and {target.shape}")
    elementwise = LOSSES[kind](pred, target, **kwargs).astype(jnp.float32)
    if mask is None:
        return jnp.mean(elementwise)
    mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32)[..., None], elementwise.shape)
    denominator = jnp.sum(mask)
    safe = jnp.where(denominator > 0, denominator, 1.0)
    return jnp.where(denominator > 0, jnp.sum(elementwise * mask) / safe, 0.0)
