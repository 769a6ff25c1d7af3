"""Landmark schemes from the data: point names, an optional ``scheme.json``, a run's config.

A dataset annotated with its own set of points (a COCO keypoints export, see
``datasets/coco_landmarks``) defines its scheme by the names of its points:

- **flip pairs** from left/right names: ``left_``/``right_`` or ``l_``/``r_`` as a prefix, or
  ``_left``/``_right``, ``_l``/``_r`` as a suffix (``-``, ``.`` and a space also separate; case is
  ignored). Names without a side are on the midline and map to themselves. If any sided name has
  no partner, or no name has a side, the scheme has no flip permutation: training makes no
  horizontal flips and evaluation no flip test.
- **a 68-point set in the 300W order**, named ``face-0`` ... ``face-67`` (the names COCO-WholeBody
  gives its face points), is the built-in 300W scheme with its boundary curves and normalisers.
- **NME normalisers**: ``eye_centers`` from the points whose names contain ``eye`` (not ``brow``)
  on each side, ``inter_ocular`` from the outer eye corners (``eye`` and ``outer``); ``box``
  always. The default is the first of ``inter_ocular``, ``eye_centers``, ``box`` that exists.
- **no boundary groups**: the boundary channel is off unless a ``scheme.json`` gives curves.

A ``scheme.json`` overrides or completes this (indices are 0-based, or point names)::

    {"name": "my5",
     "flip_pairs": [["left_eye", "right_eye"], [3, 4]],     # or "flip_permutation": [...]
     "boundary_groups": [["left_mouth", "mouth_centre", "right_mouth"]],
     "normalisation": {"inter_ocular": [["left_eye"], ["right_eye"]]},
     "default_norm": "inter_ocular"}

or ``{"same_as": "300w"}`` (any built-in scheme with the same number of points, in its order).

A run's ``config.scheme`` may be ``"dataset"``: :func:`resolve_config` replaces it by the scheme the
built dataset records (its JSON definition, or a built-in name), so the checkpoints carry it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence

from awing_jax.landmarks import SCHEMES, W300, LandmarkScheme, get_scheme

SIDES = (("left", "right"), ("l", "r"))
SEPARATORS = "_-. "
SCHEME_KEYS = ("name", "same_as", "flip_pairs", "flip_permutation", "boundary_groups",
               "normalisation", "default_norm")
# Config values resolved when a run starts.
FROM_DATASET = "dataset"
DEFAULT_NORM = "default"


def side_of(name: str) -> tuple[str, str] | None:
    """``(side, partner name)`` of a sided point name (lower case), or None for a midline name.

    ``side`` is ``"left"`` or ``"right"``; ``l_eye`` -> ``("left", "r_eye")``.
    """
    lower = name.lower()
    for left, right in SIDES:
        for word, other, side in ((left, right, "left"), (right, left, "right")):
            for sep in SEPARATORS:
                if lower.startswith(word + sep) and len(lower) > len(word) + 1:
                    return side, other + lower[len(word):]
                if lower.endswith(sep + word) and len(lower) > len(word) + 1:
                    return side, lower[: -len(word)] + other
    return None


def flip_from_names(names: Sequence[str]) -> tuple[tuple[int, ...] | None, str]:
    """The flip permutation the point names imply, or ``(None, why not)``."""
    index = {name.lower(): i for i, name in enumerate(names)}
    perm, unmatched, pairs = [], [], 0
    for i, name in enumerate(names):
        sided = side_of(name)
        if sided is None:
            perm.append(i)
        elif sided[1] in index:
            perm.append(index[sided[1]])
            pairs += 1
        else:
            unmatched.append(name)
            perm.append(i)
    if unmatched:
        return None, f"no partner for {unmatched[:5]}"
    if not pairs:
        return None, "no left/right point names"
    return tuple(perm), ""


def norms_from_names(names: Sequence[str]) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """``eye_centers`` and ``inter_ocular`` from eye point names, when both sides have them."""
    groups: dict[str, dict[str, list[int]]] = {"eye": {"left": [], "right": []},
                                               "outer": {"left": [], "right": []}}
    for i, name in enumerate(names):
        lower, sided = name.lower(), side_of(name)
        if sided is None or "eye" not in lower or "brow" in lower:
            continue
        groups["eye"][sided[0]].append(i)
        if "outer" in lower:
            groups["outer"][sided[0]].append(i)
    norms = {}
    for key, norm in (("outer", "inter_ocular"), ("eye", "eye_centers")):
        left, right = groups[key]["left"], groups[key]["right"]
        if left and right:
            norms[norm] = (tuple(left), tuple(right))
    return norms


def _indices(items, names: Sequence[str], where: str) -> tuple[int, ...]:
    """Point indices or names -> indices; errors name ``where``."""
    if isinstance(items, str | int) or not isinstance(items, Sequence):
        raise ValueError(f"{where}: expected a list of point indices or names, got {items!r}")
    lookup = {name: i for i, name in enumerate(names)}
    out = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"{where}: {item!r} is not a point index or name")
        if isinstance(item, int):
            if not 0 <= item < len(names):
                raise ValueError(f"{where}: point index {item} outside 0..{len(names) - 1}")
            out.append(item)
        elif isinstance(item, str) and item in lookup:
            out.append(lookup[item])
        else:
            raise ValueError(f"{where}: {item!r} is not a point index or one of the names "
                             f"{list(names)[:8]}{'...' if len(names) > 8 else ''}")
    return tuple(out)


def scheme_from_names(names: Sequence[str], *, name: str, spec: Mapping | None = None,
                      origin: str = "scheme.json") -> tuple[LandmarkScheme, list[str]]:
    """The scheme of a point set named ``names``, completed or overridden by ``spec`` (the
    parsed ``scheme.json``, errors naming ``origin``).

    Returns ``(scheme, notes)``: notes say what the scheme lacks (flips, boundary channel).
    """
    names = [str(n) for n in names]
    if len(names) < 3:
        raise ValueError(f"{len(names)} points: a landmark scheme needs at least 3")
    if len({n.lower() for n in names}) != len(names):
        dup = sorted({n for n in names if [m.lower() for m in names].count(n.lower()) > 1})
        raise ValueError(f"point names repeat (case ignored): {dup[:5]}")
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(SCHEME_KEYS))
    if unknown:
        raise ValueError(f"{origin}: unknown keys {unknown}; known: {list(SCHEME_KEYS)}")
    num = len(names)
    if "same_as" in spec:
        if set(spec) - {"same_as"}:
            raise ValueError(f"{origin}: 'same_as' takes no other keys")
        try:
            builtin = get_scheme(str(spec["same_as"]))
        except ValueError as e:
            raise ValueError(f"{origin}: same_as: {e}") from None
        if builtin.num_landmarks != num:
            raise ValueError(f"{origin}: same_as {builtin.name!r} has {builtin.num_landmarks} "
                             f"points, the annotations {num}")
        return builtin, []
    if not spec and num == W300.num_landmarks and [n.lower() for n in names] == [
            f"face-{i}" for i in range(num)]:
        return W300, []

    notes = []
    if "flip_pairs" in spec and "flip_permutation" in spec:
        raise ValueError(f"{origin}: give flip_pairs or flip_permutation, not both")
    if "flip_permutation" in spec:
        perm = spec["flip_permutation"]
        perm = None if perm is None else _indices(perm, names, f"{origin}: flip_permutation")
        if perm is not None and len(perm) != num:
            raise ValueError(f"{origin}: flip_permutation has {len(perm)} entries for {num} "
                             "points")
        why = "scheme.json sets flip_permutation to null"
    elif "flip_pairs" in spec:
        perm_list = list(range(num))
        for k, pair in enumerate(spec["flip_pairs"] or []):
            pair = _indices(pair, names, f"{origin}: flip_pairs[{k}]")
            if len(pair) != 2 or pair[0] == pair[1] or perm_list[pair[0]] != pair[0] \
                    or perm_list[pair[1]] != pair[1]:
                raise ValueError(f"{origin}: flip_pairs[{k}] is not a pair of two points "
                                 "that are in no other pair")
            a, b = pair
            perm_list[a], perm_list[b] = b, a
        perm, why = tuple(perm_list), ""
    else:
        perm, why = flip_from_names(names)
    groups = tuple(_indices(g, names, f"{origin}: boundary_groups[{k}]")
                   for k, g in enumerate(spec.get("boundary_groups") or []))
    if any(len(g) < 2 for g in groups):
        raise ValueError(f"{origin}: a boundary group needs at least 2 points")
    if "normalisation" in spec:
        norm_spec = spec["normalisation"]
        if not isinstance(norm_spec, Mapping):
            raise ValueError(f"{origin}: normalisation must map names to two point groups")
        norms = {}
        for key, value in norm_spec.items():
            if key == "box" or not isinstance(value, Sequence) or len(value) != 2:
                raise ValueError(f"{origin}: normalisation {key!r} must be two point groups "
                                 "('box' is built in)")
            norms[str(key)] = (_indices(value[0], names, f"{origin}: normalisation {key}"),
                               _indices(value[1], names, f"{origin}: normalisation {key}"))
    else:
        norms = norms_from_names(names)
    default = spec.get("default_norm") or next(
        (n for n in ("inter_ocular", "eye_centers") if n in norms), "box")
    try:
        scheme = LandmarkScheme(
            name=str(spec.get("name") or name), num_landmarks=num, flip_permutation=perm,
            boundary_groups=groups, normalisation=norms, default_norm=str(default),
            point_names=tuple(names))
    except ValueError as e:
        raise ValueError(f"{origin}: {e}") from None
    if perm is None:
        notes.append(f"no flip permutation ({why}): horizontal flips are off")
    if not groups:
        notes.append("no boundary groups: the boundary channel is off")
    return scheme, notes


def read_spec(path: str) -> dict | None:
    """The parsed ``scheme.json`` at ``path``, or None if there is none."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return spec


def dataset_scheme(dataset: str, data_dir: str | None = None) -> LandmarkScheme:
    """The landmark scheme a built dataset records in its metadata (``scheme``)."""
    import tensorflow_datasets as tfds

    from awing_jax import dataset_builders, errors

    dataset_builders.register(dataset)
    try:
        builder = tfds.builder(dataset, data_dir=data_dir or None)
        prepared = builder.is_prepared()
    except tfds.core.registered.DatasetNotFoundError:
        prepared = False
    if not prepared:
        raise errors.DatasetNotBuiltError(
            f"config.scheme={FROM_DATASET!r} reads the scheme of the built dataset {dataset!r}, "
            f"which is not built in {data_dir or 'the default TFDS data dir'}; build it with "
            f"{dataset_builders.build_command()} {dataset.partition('/')[0]} --manual_dir DIR"
            + (f" --data_dir {data_dir}" if data_dir else ""))
    metadata = builder.info.metadata or {}
    if "scheme" not in metadata:
        raise ValueError(f"dataset {dataset!r} records no landmark scheme: set --config.scheme "
                         f"to one of {sorted(SCHEMES)}")
    return get_scheme(metadata["scheme"])


def resolve_config(config, *, announce: Callable[[str], None] | None = print):
    """A copy of ``config`` with the scheme and the normaliser made explicit.

    ``scheme = "dataset"`` becomes the built dataset's scheme (its JSON definition, or a built-in
    name), ``norm = "default"`` the scheme's default normaliser; for a scheme without boundary
    groups the boundary channel is switched off, without a flip permutation the horizontal flips.
    Each change is announced (``announce``, e.g. ``print``; None: silent). Idempotent.
    """
    config = config.copy_and_resolve_references()
    say = announce or (lambda _: None)
    from_dataset = config.scheme == FROM_DATASET
    if from_dataset:
        config.scheme = dataset_scheme(config.dataset, config.data_dir).to_json()
    scheme = get_scheme(config.scheme)
    config.scheme = scheme.to_json()
    if config.norm == DEFAULT_NORM:
        config.norm = scheme.default_norm
    if config.norm not in scheme.norm_names:
        raise ValueError(f"config.norm {config.norm!r} is not a normaliser of the {scheme.name} "
                         f"scheme; known: {list(scheme.norm_names)}")
    if from_dataset:
        say(f"landmark scheme of {config.dataset}: {scheme.name!r}, {scheme.num_landmarks} "
            f"points, NME normaliser {config.norm!r}")
    uses_boundary = config.model.name == "fan" and config.model.get("boundary", False)
    if uses_boundary and not scheme.boundary_groups:
        config.model.boundary = False
        say(f"scheme {scheme.name!r} has no boundary groups: the boundary channel is off")
    if config.augment.flip > 0 and scheme.flip_permutation is None:
        config.augment.flip = 0.0
        say(f"scheme {scheme.name!r} has no flip permutation: horizontal flips are off")
    return config
