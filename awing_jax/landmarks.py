"""Landmark schemes: the single table every other module reads.

One :class:`LandmarkScheme` per annotation protocol (98-point WFLW, 68-point 300W, 29-point COFW,
19-point AFLW). Each holds the number of points, the horizontal-flip permutation, the facial
boundary curves used for the boundary heatmap (AWing paper, Sec. 4.3) and the pairs of landmark
groups whose distance normalises the error (NME).

Schemes of other point sets come from the data (:mod:`awing_jax.custom_schemes`, the
``coco_landmarks`` builder). They travel as JSON (:meth:`LandmarkScheme.to_json`): a run's
``config.scheme`` holds either a built-in name or such a definition, and :func:`get_scheme`
accepts both, so checkpoints and exported models carry their scheme with them.

Coordinates everywhere in awing-jax are ``(x, y)`` in pixels, 0-based, with integer values at pixel
centres: pixel ``i`` covers ``[i - 0.5, i + 0.5)``. Under that convention a horizontal flip of an
image of width ``W`` maps ``x -> W - 1 - x`` (the ``x -> W - x`` of edge-based coordinates).
The tables and their sources: docs/landmarks.md; pixel conventions: docs/conventions.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class LandmarkScheme:
    """Everything dataset-specific about a set of facial landmarks.

    Attributes:
      name: the scheme's key in :data:`SCHEMES`.
      num_landmarks: L.
      flip_permutation: ``flipped[i] = original[perm[i]]`` after mirroring x (an involution).
      boundary_groups: landmark index sequences, each one facial curve of the boundary heatmap.
      normalisation: NME normaliser name -> (group a, group b); the normalising distance is the
        distance between the mean of the points in group a and the mean of those in group b.
        The name ``"box"`` (sqrt of face-box area) is handled by the metric, not listed here.
      default_norm: the normaliser the AWing paper reports for this dataset.
      point_names: optional name of each point (schemes read from annotation files).

    A scheme from the data may lack a flip permutation (``None``: no horizontal flips, no flip
    test) or boundary groups (``()``: no boundary channel).
    """

    name: str
    num_landmarks: int
    flip_permutation: tuple[int, ...] | None
    boundary_groups: tuple[tuple[int, ...], ...]
    normalisation: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]]
    default_norm: str
    point_names: tuple[str, ...] | None = None

    def __post_init__(self):
        perm = self.flip_permutation
        if perm is not None and sorted(perm) != list(range(self.num_landmarks)):
            raise ValueError(f"{self.name}: flip permutation is not a permutation of 0..L-1")
        if perm is not None and any(perm[p] != i for i, p in enumerate(perm)):
            raise ValueError(f"{self.name}: flip permutation is not an involution "
                             "(flipping twice must give the original order)")
        if self.point_names is not None and len(self.point_names) != self.num_landmarks:
            raise ValueError(f"{self.name}: {len(self.point_names)} point names for "
                             f"{self.num_landmarks} points")
        if self.default_norm not in self.norm_names:
            raise ValueError(f"{self.name}: default normaliser {self.default_norm!r} is not one "
                             f"of {list(self.norm_names)}")
        for group in self.boundary_groups:
            if not group or max(group) >= self.num_landmarks or min(group) < 0:
                raise ValueError(f"{self.name}: boundary group {group} out of range")
        for norm, (a, b) in self.normalisation.items():
            if max(a + b) >= self.num_landmarks:
                raise ValueError(f"{self.name}: normaliser {norm} index out of range")

    @property
    def norm_names(self) -> tuple[str, ...]:
        """Every normaliser accepted by :func:`awing_jax.metrics.nme` for this scheme."""
        return (*self.normalisation, "box")

    @property
    def builtin(self) -> bool:
        """Whether this is one of the tables of :data:`SCHEMES` (then its name suffices)."""
        return SCHEMES.get(self.name) == self

    def to_dict(self) -> dict:
        """A JSON-ready definition; :func:`scheme_from_dict` reads it back."""
        return {
            "name": self.name,
            "num_landmarks": self.num_landmarks,
            "flip_permutation": None if self.flip_permutation is None
            else list(self.flip_permutation),
            "boundary_groups": [list(g) for g in self.boundary_groups],
            "normalisation": {k: [list(a), list(b)] for k, (a, b) in self.normalisation.items()},
            "default_norm": self.default_norm,
            "point_names": None if self.point_names is None else list(self.point_names),
        }

    def to_json(self) -> str:
        """The scheme as a config value: its name if built in, else its JSON definition."""
        if self.builtin:
            return self.name
        return json.dumps(self.to_dict(), separators=(",", ":"))


def _r(a: int, b: int) -> tuple[int, ...]:
    """Inclusive integer range, the way the paper lists landmark groups."""
    return tuple(range(a, b + 1))


WFLW = LandmarkScheme(
    name="wflw",
    num_landmarks=98,
    flip_permutation=(
        32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10,
        9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
        46, 45, 44, 43, 42, 50, 49, 48, 47, 37, 36, 35, 34, 33, 41, 40, 39, 38,
        51, 52, 53, 54, 59, 58, 57, 56, 55,
        72, 71, 70, 69, 68, 75, 74, 73, 64, 63, 62, 61, 60, 67, 66, 65,
        82, 81, 80, 79, 78, 77, 76, 87, 86, 85, 84, 83, 92, 91, 90, 89, 88, 95, 94, 93, 97, 96,
    ),
    boundary_groups=(
        _r(0, 32),                      # cheek
        _r(33, 37),                     # left brow (upper edge)
        _r(42, 46),                     # right brow (upper edge)
        _r(60, 64),                     # upper left lid
        (60, 67, 66, 65, 64),           # lower left lid
        _r(68, 72),                     # upper right lid
        (68, 75, 74, 73, 72),           # lower right lid
        _r(51, 54),                     # nose bridge
        _r(55, 59),                     # nose bottom
        _r(76, 82),                     # upper outer lip
        _r(88, 92),                     # upper inner lip
        (76, 87, 86, 85, 84, 83, 82),   # lower outer lip
        (88, 95, 94, 93, 92),           # lower inner lip
    ),
    normalisation={
        "inter_ocular": ((60,), (72,)),
        "inter_pupil": ((96,), (97,)),
        "eye_centers": (_r(60, 67), _r(68, 75)),
    },
    default_norm="inter_ocular",
)

W300 = LandmarkScheme(
    name="300w",
    num_landmarks=68,
    flip_permutation=(
        16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
        26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 27, 28, 29, 30,
        35, 34, 33, 32, 31, 45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
        54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,
    ),
    boundary_groups=(
        _r(0, 16),                      # cheek
        _r(17, 21),                     # left brow
        _r(22, 26),                     # right brow
        _r(36, 39),                     # upper left lid
        (36, 41, 40, 39),               # lower left lid
        _r(42, 45),                     # upper right lid
        (42, 47, 46, 45),               # lower right lid
        _r(27, 30),                     # nose bridge
        _r(31, 35),                     # nose bottom
        _r(48, 54),                     # upper outer lip
        _r(60, 64),                     # upper inner lip
        (48, 59, 58, 57, 56, 55, 54),   # lower outer lip
        (60, 67, 66, 65, 64),           # lower inner lip
    ),
    normalisation={
        "inter_ocular": ((36,), (45,)),
        # 68 points have no pupil: the pupil is taken as the eye centre, as in the 300W literature.
        "inter_pupil": (_r(36, 41), _r(42, 47)),
        "eye_centers": (_r(36, 41), _r(42, 47)),
    },
    default_norm="inter_ocular",
)

COFW = LandmarkScheme(
    name="cofw",
    num_landmarks=29,
    flip_permutation=(
        1, 0, 3, 2, 6, 7, 4, 5, 9, 8, 11, 10, 14, 15, 12, 13, 17, 16, 19, 18, 20, 21, 23, 22,
        24, 25, 26, 27, 28,
    ),
    boundary_groups=(
        (0, 4, 2), (0, 5, 2), (1, 6, 3), (1, 7, 3), (8, 12, 10), (8, 13, 10), (9, 14, 11),
        (9, 15, 11), (18, 21, 19), (22, 24, 23), (22, 25, 23), (22, 26, 23), (22, 27, 23),
    ),
    normalisation={
        "inter_ocular": ((8,), (9,)),
        "inter_pupil": ((16,), (17,)),
        "eye_centers": ((16,), (17,)),
    },
    default_norm="inter_pupil",
)

AFLW19 = LandmarkScheme(
    name="aflw19",
    num_landmarks=19,
    flip_permutation=(5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 14, 13, 12, 17, 16, 15, 18),
    boundary_groups=(
        (0, 1, 2), (3, 4, 5),           # brows
        (6, 7, 8), (9, 10, 11),         # eyes
        (12, 13, 14),                   # nose
    ),
    normalisation={
        "inter_ocular": ((6,), (11,)),
        "inter_pupil": ((7,), (10,)),
        "eye_centers": ((7,), (10,)),
    },
    default_norm="box",
)

SCHEMES: dict[str, LandmarkScheme] = {s.name: s for s in (WFLW, W300, COFW, AFLW19)}


def scheme_from_dict(definition: Mapping, origin: str = "scheme") -> LandmarkScheme:
    """The scheme of a :meth:`LandmarkScheme.to_dict` definition; errors name ``origin``."""
    try:
        perm = definition["flip_permutation"]
        names = definition.get("point_names")
        return LandmarkScheme(
            name=str(definition["name"]),
            num_landmarks=int(definition["num_landmarks"]),
            flip_permutation=None if perm is None else tuple(int(i) for i in perm),
            boundary_groups=tuple(tuple(int(i) for i in g)
                                  for g in definition["boundary_groups"]),
            normalisation={str(k): (tuple(int(i) for i in a), tuple(int(i) for i in b))
                           for k, (a, b) in definition["normalisation"].items()},
            default_norm=str(definition["default_norm"]),
            point_names=None if names is None else tuple(str(n) for n in names),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{origin}: not a landmark scheme definition: {e}") from None


@functools.lru_cache(maxsize=64)
def _scheme_from_json(text: str) -> LandmarkScheme:
    try:
        definition = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"landmark scheme: not valid JSON: {e}") from None
    return scheme_from_dict(definition)


def get_scheme(scheme: str | int | LandmarkScheme | Mapping) -> LandmarkScheme:
    """Looks a scheme up by name ("wflw", "300w", "cofw", "aflw19") or number of points, or reads
    a definition: a :meth:`LandmarkScheme.to_dict` mapping or its JSON text (``config.scheme`` of
    a run on a scheme from the data)."""
    if isinstance(scheme, LandmarkScheme):
        return scheme
    if isinstance(scheme, Mapping):
        return scheme_from_dict(scheme)
    if isinstance(scheme, str) and scheme.lstrip().startswith("{"):
        return _scheme_from_json(scheme)
    if isinstance(scheme, int | np.integer):
        for s in SCHEMES.values():
            if s.num_landmarks == scheme:
                return s
        raise ValueError(f"no landmark scheme with {scheme} points; known: "
                         f"{sorted(s.num_landmarks for s in SCHEMES.values())}")
    try:
        return SCHEMES[scheme.lower()]
    except KeyError:
        raise ValueError(f"unknown landmark scheme {scheme!r}; known: {sorted(SCHEMES)}") from None


def flip_landmarks(landmarks, width: float, scheme: str | int | LandmarkScheme):
    """Mirrors landmarks of an image of ``width`` pixels horizontally and re-orders them.

    Args:
      landmarks: (..., L, 2) array of (x, y), 0-based pixel-centre coordinates. NumPy or JAX.
      width: image width W in pixels.
      scheme: the landmark scheme whose flip permutation applies.

    Returns:
      (..., L, 2): ``out[..., i] = mirror(landmarks[..., perm[i]])`` with ``x -> W - 1 - x``.
    """
    s = get_scheme(scheme)
    if landmarks.shape[-2] != s.num_landmarks:
        raise ValueError(f"expected {s.num_landmarks} landmarks for {s.name}, "
                         f"got shape {landmarks.shape}")
    perm = np.asarray(require_flip_permutation(s))
    flipped = landmarks[..., perm, :]
    x = (width - 1) - flipped[..., 0]
    if isinstance(flipped, np.ndarray):
        return np.stack([x, flipped[..., 1]], axis=-1)
    import jax.numpy as jnp

    return jnp.stack([x, flipped[..., 1]], axis=-1)


def require_flip_permutation(scheme: str | int | LandmarkScheme) -> tuple[int, ...]:
    """The scheme's flip permutation; a clear error for a scheme that has none."""
    s = get_scheme(scheme)
    if s.flip_permutation is None:
        raise ValueError(f"landmark scheme {s.name!r} has no flip permutation (its point names "
                         "pair no left/right points and no scheme.json gives one), so it cannot "
                         "be mirrored: no flip test, no horizontal flips")
    return s.flip_permutation
