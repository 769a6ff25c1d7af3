"""Maps between landmark schemes: which point of one scheme stands for each point of another.

Fine-tuning a model of one scheme for another (``config.init_landmark_map``,
:mod:`awing_jax.finetune`) keeps, for every target landmark, the output channel of its source
landmark, so that the run starts from heatmaps that already find the face's points.
See docs/landmark_maps.md.

``wflw_to_300w``: the usual correspondence of WFLW's 98 points to the 68 points of 300W (iBUG):
every other cheek point; the upper edge of each brow (WFLW's points 33-37 and 42-46; their lower
edges have no 68-point counterpart); the nose bridge and the nostrils one to one; of each eye's
eight points the two corners, the two upper points next to the top centre and the two lower
points next to the bottom centre (WFLW's top and bottom centres 62, 66, 70, 74 are dropped); the
twenty mouth points one to one. The pupils 96 and 97 have no 68-point counterpart.
"""

from __future__ import annotations

import dataclasses

from awing_jax.landmarks import get_scheme


def _wflw_to_300w() -> tuple[int, ...]:
    cheek = list(range(0, 33, 2))                  # 0-16
    brows = list(range(33, 38)) + list(range(42, 47))  # 17-26
    nose = list(range(51, 60))                     # 27-35
    left_eye = [60, 61, 63, 64, 65, 67]            # 36-41
    right_eye = [68, 69, 71, 72, 73, 75]           # 42-47
    mouth = list(range(76, 96))                    # 48-67
    return tuple(cheek + brows + nose + left_eye + right_eye + mouth)


@dataclasses.dataclass(frozen=True)
class LandmarkMap:
    """``target point i = source point indices[i]``."""

    name: str
    source: str
    target: str
    indices: tuple[int, ...]


MAPS = {
    "wflw_to_300w": LandmarkMap("wflw_to_300w", "wflw", "300w", _wflw_to_300w()),
}


def get_map(name: str) -> LandmarkMap:
    """The map called ``name``; checks it against its schemes' sizes."""
    if name not in MAPS:
        raise ValueError(f"unknown landmark map {name!r}; known: {', '.join(sorted(MAPS))}")
    found = MAPS[name]
    source, target = get_scheme(found.source), get_scheme(found.target)
    if len(found.indices) != target.num_landmarks or not all(
            0 <= i < source.num_landmarks for i in found.indices):
        raise ValueError(f"landmark map {name!r} does not fit {source.name} -> {target.name}")
    return found


def map_points(points, name: str):
    """(..., L_source, 2) points of the source scheme -> (..., L_target, 2) of the target."""
    return points[..., list(get_map(name).indices), :]
