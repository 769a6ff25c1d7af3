"""Landmark schemes as the datasets define them, typed in as data for the tests.

Independent of :mod:`awing_jax.landmarks`: the mirror pairs, the boundary curves (AWing paper,
Sec. 4.3, each curve's points in the order the curve passes them), the normalising points, and a
frontal mean face per scheme written point by point in the scheme's order.

Conventions: (x, y) with x to the image's right and y down, in units of the face width; "left"
means image-left.
"""

import numpy as np


def pairs_to_permutation(num_landmarks, pairs):
    """perm[i] = partner of i (itself when it lies on the midline)."""
    perm = list(range(num_landmarks))
    for a, b in pairs:
        assert perm[a] == a and perm[b] == b, f"{a} or {b} paired twice"
        perm[a], perm[b] = b, a
    return tuple(perm)


def _span(a, b):
    return tuple(range(a, b + 1))


# ------------------------------------------------------------------------------------------------
# 300W, 68 points (iBUG/Multi-PIE markup): 0-16 jaw from the left ear over the chin to the right
# ear; 17-21 left brow and 22-26 right brow, each from left to right; 27-30 nose bridge, top to
# tip; 31-35 nostril base, left to right; 36-41 left eye: 36 outer corner, 37-38 upper lid, 39
# inner corner, 40-41 lower lid back towards 36; 42-47 right eye: 42 inner corner, 43-44 upper
# lid, 45 outer corner, 46-47 lower lid back towards 42; 48-59 outer lips: 48 left corner, 49-53
# upper lip, 54 right corner, 55-59 lower lip back towards 48; 60-67 inner lips: 60 left corner,
# 61-63 upper, 64 right corner, 65-67 lower back towards 60.
W300_PAIRS = (
    *[(i, 16 - i) for i in range(8)],                               # jaw, 8 on the midline
    (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),               # brows
    (31, 35), (32, 34),                                             # nostrils, 27-30 and 33 mid
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),     # eyes: outer, upper, inner
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),               # outer lips, 51 and 57 mid
    (60, 64), (61, 63), (65, 67),                                   # inner lips, 62 and 66 mid
)
W300_CURVES = (
    _span(0, 16),                                    # cheek / jaw
    _span(17, 21), _span(22, 26),                    # brows
    (36, 37, 38, 39), (36, 41, 40, 39),              # left eye: upper and lower lid
    (42, 43, 44, 45), (42, 47, 46, 45),              # right eye
    (27, 28, 29, 30),                                # nose bridge
    (31, 32, 33, 34, 35),                            # nose bottom
    _span(48, 54), (48, 59, 58, 57, 56, 55, 54),     # outer lips: upper, lower
    _span(60, 64), (60, 67, 66, 65, 64),             # inner lips: upper, lower
)
W300_NORMS = {"inter_ocular": ((36,), (45,)), "eye_centers": (_span(36, 41), _span(42, 47))}

# A frontal mean face in units of the face width, centred on the nose bridge; point i is row i.
W300_MEAN = np.array([
    # jaw 0-16
    (-0.50, -0.08), (-0.49, -0.02), (-0.46, 0.08), (-0.42, 0.19), (-0.35, 0.30), (-0.28, 0.40),
    (-0.19, 0.47), (-0.10, 0.52), (0.00, 0.54), (0.10, 0.52), (0.19, 0.47), (0.28, 0.40),
    (0.35, 0.30), (0.42, 0.19), (0.46, 0.08), (0.49, -0.02), (0.50, -0.08),
    # brows 17-26
    (-0.40, -0.245), (-0.33, -0.285), (-0.25, -0.30), (-0.17, -0.29), (-0.09, -0.265),
    (0.09, -0.265), (0.17, -0.29), (0.25, -0.30), (0.33, -0.285), (0.40, -0.245),
    # nose 27-35
    (0.0, -0.15), (0.0, -0.06), (0.0, 0.03), (0.0, 0.12),
    (-0.09, 0.17), (-0.045, 0.185), (0.0, 0.195), (0.045, 0.185), (0.09, 0.17),
    # left eye 36-41, right eye 42-47
    (-0.34, -0.12), (-0.29, -0.15), (-0.21, -0.15), (-0.15, -0.115), (-0.21, -0.097),
    (-0.29, -0.10),
    (0.15, -0.115), (0.21, -0.15), (0.29, -0.15), (0.34, -0.12), (0.29, -0.10), (0.21, -0.097),
    # outer lips 48-59
    (-0.19, 0.34), (-0.12, 0.305), (-0.05, 0.29), (0.0, 0.295), (0.05, 0.29), (0.12, 0.305),
    (0.19, 0.34), (0.13, 0.385), (0.06, 0.405), (0.0, 0.41), (-0.06, 0.405), (-0.13, 0.385),
    # inner lips 60-67 (mouth slightly open)
    (-0.165, 0.34), (-0.06, 0.325), (0.0, 0.327), (0.06, 0.325), (0.165, 0.34), (0.06, 0.36),
    (0.0, 0.362), (-0.06, 0.36),
])

# ------------------------------------------------------------------------------------------------
# WFLW, 98 points: 0-32 contour from the left ear over the chin; 33-41 left brow: 33-37 upper
# edge from the outer to the inner end, 38-41 lower edge from the inner back to the outer end;
# 42-50 right brow: 42-46 upper edge from the inner to the outer end, 47-50 lower edge from the
# outer back to the inner end; 51-54 nose bridge; 55-59 nose bottom, left to right; 60-67 left
# eye: 60 outer corner, 61-63 upper lid, 64 inner corner, 65-67 lower lid back towards 60; 68-75
# right eye: 68 inner corner, 69-71 upper lid, 72 outer corner, 73-75 lower lid back towards 68;
# 76-87 outer lips and 88-95 inner lips as 300W's 48-67; 96 left pupil, 97 right pupil.
WFLW_PAIRS = (
    *[(i, 32 - i) for i in range(16)],                              # contour, 16 on the midline
    (33, 46), (34, 45), (35, 44), (36, 43), (37, 42),               # brows, upper edges
    (38, 50), (39, 49), (40, 48), (41, 47),                         # brows, lower edges
    (55, 59), (56, 58),                                             # nose bottom, 51-54, 57 mid
    (60, 72), (61, 71), (62, 70), (63, 69), (64, 68),               # eyes: corners, upper lids
    (65, 75), (66, 74), (67, 73),                                   # eyes: lower lids
    (76, 82), (77, 81), (78, 80), (83, 87), (84, 86),               # outer lips, 79 and 85 mid
    (88, 92), (89, 91), (93, 95),                                   # inner lips, 90 and 94 mid
    (96, 97),                                                       # pupils
)
WFLW_CURVES = (
    _span(0, 32),                                    # cheek
    _span(33, 37), _span(42, 46),                    # brows (upper edges)
    _span(60, 64), (60, 67, 66, 65, 64),             # left eye: upper and lower lid
    _span(68, 72), (68, 75, 74, 73, 72),             # right eye
    _span(51, 54),                                   # nose bridge
    _span(55, 59),                                   # nose bottom
    _span(76, 82), (76, 87, 86, 85, 84, 83, 82),     # outer lips: upper, lower
    _span(88, 92), (88, 95, 94, 93, 92),             # inner lips: upper, lower
)
WFLW_NORMS = {"inter_ocular": ((60,), (72,)), "inter_pupil": ((96,), (97,)),
              "eye_centers": (_span(60, 67), _span(68, 75))}


def _mid(a, b):
    return (np.asarray(a) + np.asarray(b)) / 2


def _wflw_mean():
    """The 98-point face built from the 68-point one by the points both schemes share."""
    m = W300_MEAN
    shape = np.full((98, 2), np.nan)
    shape[0:33:2] = m[0:17]                                # every other contour point ...
    shape[1:33:2] = _mid(m[0:16], m[1:17])                 # ... and the ones between
    below = np.array([0.0, 0.035])                         # brow thickness
    UP, DOWN = np.array([0.0, 0.005]), np.array([0.0, 0.003])  # lids bulge at their middle
    shape[33:38] = m[17:22]
    shape[38:42] = _mid(m[[21, 20, 19, 18]], m[[20, 19, 18, 17]]) + below  # inner -> outer
    shape[42:47] = m[22:27]
    shape[47:51] = _mid(m[[26, 25, 24, 23]], m[[25, 24, 23, 22]]) + below  # outer -> inner
    shape[51:55] = m[27:31]
    shape[55:60] = m[31:36]
    shape[60:68] = [m[36], m[37], _mid(m[37], m[38]) - UP, m[38], m[39], m[40],
                    _mid(m[40], m[41]) + DOWN, m[41]]
    shape[68:76] = [m[42], m[43], _mid(m[43], m[44]) - UP, m[44], m[45], m[46],
                    _mid(m[46], m[47]) + DOWN, m[47]]
    shape[76:96] = m[48:68]
    shape[96] = m[36:42].mean(0)
    shape[97] = m[42:48].mean(0)
    assert not np.isnan(shape).any()
    return shape


# ------------------------------------------------------------------------------------------------
# COFW, 29 points (the LFPW markup without the ear points): 0/1 left/right brow outer end, 2/3
# left/right brow inner end, 4/5 left brow top/bottom, 6/7 right brow top/bottom, 8/9 left/right
# eye outer corner, 10/11 left/right eye inner corner, 12/13 left eye top/bottom, 14/15 right eye
# top/bottom, 16/17 left/right pupil, 18/19 left/right nostril, 20 nose tip, 21 nose bottom,
# 22/23 left/right mouth corner, 24/25 upper lip top/bottom, 26/27 lower lip top/bottom, 28 chin.
COFW_PAIRS = ((0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17),
              (18, 19), (22, 23))
COFW_CURVES = (
    (0, 4, 2), (0, 5, 2), (1, 6, 3), (1, 7, 3),             # brows: over the top, under
    (8, 12, 10), (8, 13, 10), (9, 14, 11), (9, 15, 11),     # eyes: upper, lower lid
    (18, 21, 19),                                           # nose bottom
    (22, 24, 23), (22, 25, 23), (22, 26, 23), (22, 27, 23),  # the four lip lines
)
COFW_NORMS = {"inter_pupil": ((16,), (17,)), "inter_ocular": ((8,), (9,))}
COFW_MEAN = np.array([
    (-0.36, -0.27), (0.36, -0.27), (-0.10, -0.27), (0.10, -0.27),
    (-0.23, -0.31), (-0.23, -0.255), (0.23, -0.31), (0.23, -0.255),
    (-0.34, -0.12), (0.34, -0.12), (-0.15, -0.115), (0.15, -0.115),
    (-0.25, -0.155), (-0.25, -0.095), (0.25, -0.155), (0.25, -0.095),
    (-0.245, -0.125), (0.245, -0.125),
    (-0.09, 0.15), (0.09, 0.15), (0.0, 0.12), (0.0, 0.19),
    (-0.19, 0.34), (0.19, 0.34), (0.0, 0.29), (0.0, 0.33), (0.0, 0.355), (0.0, 0.41),
    (0.0, 0.54),
])

# ------------------------------------------------------------------------------------------------
# AFLW-19 (AFLW's 21 points without the ears): 0-2 left brow (left corner, centre, right corner),
# 3-5 right brow, 6-8 left eye (left corner, centre, right corner), 9-11 right eye, 12-14 nose
# (left, centre, right), 15-17 mouth (left corner, centre, right corner), 18 chin.
AFLW19_PAIRS = ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17))
AFLW19_CURVES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11), (12, 13, 14))
AFLW19_NORMS = {"inter_ocular": ((6,), (11,)), "inter_pupil": ((7,), (10,))}
AFLW19_MEAN = np.array([
    (-0.40, -0.25), (-0.25, -0.30), (-0.09, -0.265), (0.09, -0.265), (0.25, -0.30),
    (0.40, -0.25),
    (-0.34, -0.12), (-0.245, -0.125), (-0.15, -0.115), (0.15, -0.115), (0.245, -0.125),
    (0.34, -0.12),
    (-0.09, 0.16), (0.0, 0.18), (0.09, 0.16),
    (-0.19, 0.34), (0.0, 0.35), (0.19, 0.34),
    (0.0, 0.54),
])

FACTS = {
    "wflw": (98, WFLW_PAIRS, WFLW_CURVES, WFLW_NORMS, _wflw_mean()),
    "300w": (68, W300_PAIRS, W300_CURVES, W300_NORMS, W300_MEAN),
    "cofw": (29, COFW_PAIRS, COFW_CURVES, COFW_NORMS, COFW_MEAN),
    "aflw19": (19, AFLW19_PAIRS, AFLW19_CURVES, AFLW19_NORMS, AFLW19_MEAN),
}
NAMES = sorted(FACTS)
