"""Procedural cartoon faces with 68 landmarks in the 300W order, drawn from the landmark geometry.

The face is a mean 3-D shape (:data:`TEMPLATE`, left-right symmetric) deformed by identity (face
width and length, eye spacing and size, nose, mouth) and expression (mouth opening, smile, brow
raise, eye opening), turned by yaw and pitch, projected orthographically and rolled. The outline
(landmarks 0–16 and the forehead above them) lies on the rim of an ellipsoidal head, so under yaw it
follows the silhouette: the far side is compressed against it while eyes, nose and mouth, which
stand in front of the rim, slide towards it.

Everything is drawn from the landmarks: the skin polygon's lower edge is the jaw, brows are strokes
through 17–26, the eyes are filled lid polygons 36–47 with the iris clipped to them, the nose is a
bridge shade along 27–30 with nostrils on 31–35, and the lips fill the band between the outer
(48–59) and inner (60–67) contours, dark inside when the mouth is open. Backgrounds, occluders,
blur and noise make the pixels less easy than the geometry.

Coordinates: the head frame has x right, y down, z towards the camera, in units of the face width.
Images use the awing-jax convention (0-based, integers at pixel centres), the one cv2 draws with;
the ``shift`` argument of cv2's drawing calls keeps sub-pixel positions in that same convention.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from awing_jax import crop, landmarks

NUM_LANDMARKS = 68
OCCLUDERS = ("none", "hand", "bar")

# Mean head: half-width, depth and jaw drop of the ellipsoidal rim, the rim's height at the ears.
HALF_WIDTH, DEPTH, JAW_DROP, EAR_LEVEL = 0.5, 0.42, 0.62, -0.08
# The jaw is y = EAR_LEVEL + JAW_DROP * sin(phi) ** JAW_CURVE: near-vertical cheeks, a round chin.
JAW_CURVE = 1.4
FOREHEAD_RISE = 0.55  # the outline's top lies this far above the ear level

_SHIFT = 4            # cv2 sub-pixel bits
_ONE = 1 << _SHIFT

_JAW = np.arange(0, 17)
_BROWS = np.arange(17, 27)
_NOSE = np.arange(27, 36)
_EYES = (np.arange(36, 42), np.arange(42, 48))
_UPPER_LIDS = np.array([37, 38, 43, 44])
_LOWER_LIDS = np.array([40, 41, 46, 47])
_OUTER_LOWER_LIP = np.arange(55, 60)
_INNER_LOWER_LIP = np.arange(65, 68)
_MOUTH_CORNERS = np.array([48, 54, 60, 64])
_MOUTH = np.arange(48, 68)

# Skin tones from light to dark (RGB), interpolated; hair and iris palettes.
_SKIN = np.array([[245, 212, 190], [226, 180, 150], [196, 140, 105], [150, 100, 70], [92, 60, 44]])
_HAIR = np.array([[25, 20, 18], [60, 40, 28], [110, 75, 45], [200, 160, 100], [150, 60, 30],
                  [160, 160, 160]])
_IRIS = np.array([[70, 45, 25], [40, 30, 25], [70, 110, 160], [80, 120, 80], [110, 90, 60]])


def _rim(phi, half_width, depth, drop, level, curve):
    """(N, 3) points of the head's rim at angles ``phi``: 0 image-left ear, pi/2 front, pi right."""
    phi = np.asarray(phi, dtype=np.float64)
    return np.stack([-half_width * np.cos(phi),
                     level + drop * np.abs(np.sin(phi)) ** curve,
                     depth * np.sin(phi)], axis=-1)


def _jaw_angles() -> np.ndarray:
    return np.linspace(0.0, np.pi, 17)


def _surface_depth(x) -> np.ndarray:
    """Depth of the face's front surface at ``x``: the ellipsoid, slightly wider than the rim."""
    return DEPTH * np.sqrt(np.clip(1.0 - (np.asarray(x) / (1.04 * HALF_WIDTH)) ** 2, 0.0, None))


def _mean_template() -> np.ndarray:
    """(68, 3) mean face: the image-left half and the midline are listed, the rest is mirrored."""
    points = np.full((NUM_LANDMARKS, 3), np.nan)
    points[_JAW] = _rim(_jaw_angles(), HALF_WIDTH, DEPTH, JAW_DROP, EAR_LEVEL, JAW_CURVE)
    # (index, x, y, height above the surface)
    left_and_middle = [
        (17, -0.40, -0.245, 0.0), (18, -0.33, -0.285, 0.0), (19, -0.25, -0.30, 0.0),
        (20, -0.17, -0.29, 0.0), (21, -0.09, -0.265, 0.0),
        (27, 0.0, -0.15, 0.03), (28, 0.0, -0.06, 0.07), (29, 0.0, 0.03, 0.11),
        (30, 0.0, 0.12, 0.16),
        (31, -0.09, 0.17, 0.04), (32, -0.045, 0.185, 0.07), (33, 0.0, 0.195, 0.09),
        (36, -0.34, -0.12, -0.03), (37, -0.29, -0.15, -0.02), (38, -0.21, -0.15, -0.02),
        (39, -0.15, -0.115, -0.03), (40, -0.21, -0.097, -0.02), (41, -0.29, -0.10, -0.02),
        (48, -0.19, 0.34, 0.02), (49, -0.12, 0.305, 0.03), (50, -0.05, 0.29, 0.035),
        (51, 0.0, 0.295, 0.035), (57, 0.0, 0.41, 0.035), (58, -0.06, 0.405, 0.03),
        (59, -0.13, 0.385, 0.025),
        (60, -0.165, 0.34, 0.015), (61, -0.06, 0.33, 0.025), (62, 0.0, 0.332, 0.025),
        (66, 0.0, 0.34, 0.025), (67, -0.06, 0.338, 0.025),
    ]
    for i, x, y, height in left_and_middle:
        points[i] = (x, y, _surface_depth(x) + height)
    perm = np.asarray(landmarks.W300.flip_permutation)
    missing = np.isnan(points[:, 0])
    points[missing] = points[perm[missing]] * np.array([-1.0, 1.0, 1.0])
    return points


TEMPLATE = _mean_template()
TEMPLATE.setflags(write=False)


@dataclasses.dataclass(frozen=True)
class FaceParams:
    """Everything that decides one face; :func:`sample_face` draws it, tests may edit it.

    Geometry (units of the face width unless noted): ``half_width``, ``depth``, ``jaw_drop`` of the
    rim; ``eye_spacing``, ``eye_size`` (factors), ``eye_height``, ``brow_height``, ``nose_length``
    (factor), ``nose_width`` (factor), ``mouth_width`` (factor), ``mouth_height``; ``wobble``
    (68, 2) per-point identity offsets. Expression: ``mouth_open``, ``smile``, ``brow_raise``,
    ``eye_open`` (factor, 0 closed); ``gaze`` (2,) iris offset in eye half-widths. Pose: ``yaw``,
    ``pitch``, ``roll`` in radians; ``box_jitter`` (4,): detector-box centre shift (fractions of the
    landmarks' extent) and log side scales. Appearance: RGB ``skin``, ``lips``, ``hair``, ``brows``,
    ``iris``, ``clothes``; ``brow_thickness``; ``hair_style`` (0 bald, 1 short, 2 long);
    ``hairline``; ``light`` (2,) gradient across the face (fractions per face width). Photo:
    ``occluder`` in :data:`OCCLUDERS`, ``blur_sigma`` (pixels at 256), ``noise_std`` (grey levels).
    """

    half_width: float
    depth: float
    jaw_drop: float
    eye_spacing: float
    eye_size: float
    eye_height: float
    brow_height: float
    nose_length: float
    nose_width: float
    mouth_width: float
    mouth_height: float
    wobble: np.ndarray
    mouth_open: float
    smile: float
    brow_raise: float
    eye_open: float
    gaze: np.ndarray
    yaw: float
    pitch: float
    roll: float
    box_jitter: np.ndarray
    skin: np.ndarray
    lips: np.ndarray
    hair: np.ndarray
    brows: np.ndarray
    iris: np.ndarray
    clothes: np.ndarray
    brow_thickness: float
    hair_style: int
    hairline: float
    light: np.ndarray
    occluder: str
    blur_sigma: float
    noise_std: float


def sample_face(rng: np.random.Generator) -> FaceParams:
    """Draws a random face (identity, expression, pose, appearance, photo conditions)."""
    tone = rng.uniform(0.0, len(_SKIN) - 1)
    lo = int(min(tone, len(_SKIN) - 2))
    skin = (_SKIN[lo] + (tone - lo) * (_SKIN[lo + 1] - _SKIN[lo])) * rng.uniform(0.92, 1.08, 3)
    skin = np.clip(skin, 30, 250)
    lips = skin * np.array([0.86, 0.55, 0.58]) * rng.uniform(0.85, 1.05)
    if rng.random() < 0.2:  # lipstick
        lips = np.array([170.0, 30.0, 50.0]) * rng.uniform(0.6, 1.1)
    hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.8, 1.2, 3)
    mouth_open = 0.0 if rng.random() < 0.45 else rng.uniform(0.01, 0.16)
    return FaceParams(
        half_width=HALF_WIDTH * np.exp(rng.normal(0.0, 0.06)),
        depth=DEPTH * np.exp(rng.normal(0.0, 0.08)),
        jaw_drop=JAW_DROP * np.exp(rng.normal(0.0, 0.07)),
        eye_spacing=np.exp(rng.normal(0.0, 0.06)),
        eye_size=np.exp(rng.normal(0.0, 0.1)),
        eye_height=rng.normal(0.0, 0.02),
        brow_height=rng.normal(0.0, 0.015),
        nose_length=np.exp(rng.normal(0.0, 0.08)),
        nose_width=np.exp(rng.normal(0.0, 0.1)),
        mouth_width=np.exp(rng.normal(0.0, 0.08)),
        mouth_height=rng.normal(0.0, 0.02),
        wobble=rng.normal(0.0, 0.006, (NUM_LANDMARKS, 2)),
        mouth_open=mouth_open,
        smile=rng.uniform(-0.02, 0.045),
        brow_raise=rng.normal(0.01, 0.02),
        eye_open=float(np.clip(rng.normal(1.0, 0.25), 0.1, 1.4)),
        gaze=rng.normal(0.0, 0.25, 2),
        yaw=np.deg2rad(np.clip(rng.normal(0.0, 20.0), -45.0, 45.0)),
        pitch=np.deg2rad(np.clip(rng.normal(0.0, 8.0), -20.0, 20.0)),
        roll=np.deg2rad(np.clip(rng.normal(0.0, 13.0), -40.0, 40.0)),
        box_jitter=np.concatenate([rng.normal(0.0, 0.04, 2), rng.normal(0.02, 0.05, 2)]),
        skin=skin,
        lips=np.clip(lips, 15, 255),
        hair=np.clip(hair, 10, 255),
        brows=skin * rng.uniform(0.3, 0.5) * (0.6 + 0.4 * hair / 255.0),
        iris=_IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.8, 1.2),
        clothes=rng.uniform(20, 235, 3),
        brow_thickness=rng.uniform(0.025, 0.05),
        hair_style=int(rng.choice(3, p=[0.12, 0.5, 0.38])),
        hairline=rng.uniform(-0.56, -0.42),
        light=rng.normal(0.0, 0.25, 2),
        occluder=str(rng.choice(OCCLUDERS, p=[0.65, 0.2, 0.15])),
        blur_sigma=float(rng.choice([0.0, rng.uniform(0.3, 1.6)], p=[0.5, 0.5])),
        noise_std=float(rng.uniform(0.0, 7.0)),
    )


def _project(points, params: FaceParams) -> np.ndarray:
    """(N, 3) yawed points (x, y, z) -> (N, 2) image-plane head coordinates after pitch and roll."""
    y = points[:, 1] * np.cos(params.pitch) + points[:, 2] * np.sin(params.pitch)
    c, s = np.cos(params.roll), np.sin(params.roll)
    return np.stack([c * points[:, 0] - s * y, s * points[:, 0] + c * y], axis=-1)


def _posed_rim(phi, level, drop, curve, params: FaceParams) -> np.ndarray:
    """(N, 2) projected rim points; past the silhouette they stay on it (the far cheek folds)."""
    phi = np.asarray(phi, dtype=np.float64)
    points = _rim(phi, params.half_width, params.depth, drop, level, curve)
    # Yawed, the rim's x is -radius * cos(phi + shift); phi + shift past [0, pi] is behind the head.
    c, s = np.cos(params.yaw), np.sin(params.yaw)
    radius = np.hypot(params.half_width * c, params.depth * s)
    shift = np.arctan2(params.depth * s, params.half_width * c)
    yawed = np.stack([-radius * np.cos(np.clip(phi + shift, 0.0, np.pi)), points[:, 1],
                      -points[:, 0] * s + points[:, 2] * c], axis=-1)
    return _project(yawed, params)


def _scale_about(points, centre, factor):
    return centre + (points - centre) * factor


def face_landmarks(params: FaceParams) -> np.ndarray:
    """(68, 2) landmarks in the projected head frame (units of the face width, y down)."""
    pts = TEMPLATE.copy()
    # Identity.
    for eye in _EYES:
        centre = pts[eye].mean(axis=0)
        pts[eye] = _scale_about(pts[eye], centre, params.eye_size)
        pts[eye, 0] += centre[0] * (params.eye_spacing - 1.0)
        pts[eye, 1] += params.eye_height
        pts[eye, 2] = _surface_depth(pts[eye, 0]) - 0.03
    pts[_BROWS, 0] *= params.eye_spacing
    pts[_BROWS, 1] += params.eye_height + params.brow_height - params.brow_raise
    top = pts[27].copy()
    pts[_NOSE[1:]] = _scale_about(pts[_NOSE[1:]], top, np.array([params.nose_width,
                                                                 params.nose_length, 1.0]))
    mouth_centre = pts[_MOUTH].mean(axis=0)
    pts[_MOUTH] = _scale_about(pts[_MOUTH], mouth_centre, np.array([params.mouth_width, 1.0, 1.0]))
    pts[_MOUTH, 1] += params.mouth_height + (params.nose_length - 1.0) * 0.2
    pts[:, :2] += params.wobble
    # Expression.
    corners_y = np.repeat(0.5 * (pts[[36, 42], 1] + pts[[39, 45], 1]), 2)
    # The lower lid moves half as much as the upper one when the eye closes.
    for lids, factor in ((_UPPER_LIDS, params.eye_open),
                         (_LOWER_LIDS, 0.5 + 0.5 * params.eye_open)):
        pts[lids, 1] = corners_y + (pts[lids, 1] - corners_y) * factor
    pts[_OUTER_LOWER_LIP, 1] += params.mouth_open
    pts[_INNER_LOWER_LIP, 1] += params.mouth_open
    pts[[57, 66], 1] += 0.1 * params.mouth_open
    pts[_MOUTH_CORNERS, 1] += 0.3 * params.mouth_open - params.smile
    pts[_MOUTH_CORNERS, 0] += np.sign(pts[_MOUTH_CORNERS, 0]) * params.smile
    # Pose: features turn with the head, the outline stays on the silhouette.
    c, s = np.cos(params.yaw), np.sin(params.yaw)
    yawed = np.stack([pts[:, 0] * c + pts[:, 2] * s, pts[:, 1],
                      -pts[:, 0] * s + pts[:, 2] * c], axis=-1)
    out = _project(yawed, params)
    chin_drop = params.jaw_drop + 0.7 * params.mouth_open
    jaw = _posed_rim(_jaw_angles(), EAR_LEVEL, chin_drop, JAW_CURVE, params)
    out[_JAW] = jaw + params.wobble[_JAW]
    return out


def detector_box(points, params: FaceParams) -> np.ndarray:
    """(4,) a detector's box: the landmarks' extent, shifted and resized by ``box_jitter``."""
    x1, y1, x2, y2 = crop.landmarks_box(points)
    w, h = x2 - x1, y2 - y1
    cx = 0.5 * (x1 + x2) + params.box_jitter[0] * w
    cy = 0.5 * (y1 + y2) + params.box_jitter[1] * h
    w, h = w * np.exp(params.box_jitter[2]), h * np.exp(params.box_jitter[3])
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class _Canvas:
    """An RGB uint8 image with drawing in image-pixel coordinates at sub-pixel precision."""

    def __init__(self, image: np.ndarray, to_pixels: np.ndarray):
        self.image = image
        self.to_pixels = to_pixels
        self.unit = float(np.hypot(*to_pixels[:, 0]))  # pixels per face width

    def px(self, points) -> np.ndarray:
        return crop.apply(self.to_pixels, points)

    @staticmethod
    def fixed(points) -> np.ndarray:
        return np.round(np.asarray(points) * _ONE).astype(np.int32).reshape(-1, 1, 2)

    def width(self, face_widths: float) -> int:
        return max(1, round(face_widths * self.unit))

    def fill(self, points, colour, image=None):
        cv2.fillPoly(self.image if image is None else image, [self.fixed(self.px(points))],
                     _colour(colour), cv2.LINE_AA, _SHIFT)

    def line(self, points, colour, face_widths, closed=False, image=None):
        cv2.polylines(self.image if image is None else image, [self.fixed(self.px(points))], closed,
                      _colour(colour), self.width(face_widths), cv2.LINE_AA, _SHIFT)

    def ellipse(self, centre, axes, angle_deg, colour, image=None):
        c = tuple(int(v) for v in self.fixed(self.px(centre)).reshape(2))
        a = tuple(max(1, round(v * self.unit * _ONE)) for v in axes)
        cv2.ellipse(self.image if image is None else image, c, a, angle_deg, 0, 360,
                    _colour(colour), -1, cv2.LINE_AA, _SHIFT)

    def blend(self, layer, mask, alpha=1.0):
        """Composites ``layer`` where the uint8 ``mask`` is set, with opacity ``alpha``."""
        x, y, w, h = cv2.boundingRect(mask)
        if w == 0:
            return
        window = (slice(y, y + h), slice(x, x + w))
        m = mask[window][..., None].astype(np.float32) * np.float32(alpha / 255.0)
        under = self.image[window].astype(np.float32)
        self.image[window] = np.clip(under + (layer[window] - under) * m, 0, 255).astype(np.uint8)


def _colour(rgb) -> tuple[float, ...]:
    return tuple(min(255.0, max(0.0, float(v))) for v in rgb)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Clutter: a colour gradient, random shapes and lines, low-frequency texture, defocus.

    Drawn at half resolution and enlarged: it is out of focus anyway, and that halves the cost.
    """
    half = max(8, size // 2)
    ramp = np.linspace(-0.5, 0.5, half, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])[..., None] + 0.5
    a, b = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    image = (a + t * (b - a)).astype(np.uint8)
    for _ in range(rng.integers(4, 14)):
        colour = _colour(rng.uniform(0, 255, 3))
        x, y = rng.uniform(-0.1, 1.1, 2) * half
        r = rng.uniform(0.03, 0.3) * half
        kind = rng.integers(4)
        if kind == 0:
            cv2.circle(image, (int(x), int(y)), int(r), colour, -1, cv2.LINE_AA)
        elif kind == 1:
            rect = ((x, y), (r * rng.uniform(0.5, 2.5), r * rng.uniform(0.5, 2.5)),
                    rng.uniform(0, 180))
            cv2.fillPoly(image, [cv2.boxPoints(rect).astype(np.int32)], colour, cv2.LINE_AA)
        elif kind == 2:
            corners = np.array([x, y]) + rng.normal(0, r, (rng.integers(3, 7), 2))
            cv2.fillPoly(image, [corners.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            end = np.array([x, y]) + rng.normal(0, 2 * r, 2)
            cv2.line(image, (int(x), int(y)), tuple(int(v) for v in end), colour,
                     int(rng.integers(1, max(2, half // 40))), cv2.LINE_AA)
    texture = cv2.resize(rng.normal(0, rng.uniform(0, 25), (8, 8, 3)).astype(np.float32),
                         (half, half), interpolation=cv2.INTER_LINEAR)
    image = cv2.add(image, texture, dtype=cv2.CV_8U)
    sigma = rng.uniform(0, 1.25) * size / 256
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def _soften(mask: np.ndarray, sigma: float) -> np.ndarray:
    """About a Gaussian blur of width ``sigma``: two box filters, at a cost that ignores sigma."""
    k = max(1, round(sigma * 1.7)) | 1
    return cv2.blur(cv2.blur(mask, (k, k)), (k, k))


def _draw_head(canvas: _Canvas, lm: np.ndarray, params: FaceParams):
    """Neck, clothes, hair behind the head, ears, and the shaded skin of the face."""
    skin = params.skin
    down = np.array([-np.sin(params.roll), np.cos(params.roll)]) * 0.5 + np.array([0.0, 0.5])
    neck_top = lm[[4, 12]]
    neck = np.array([neck_top[0], neck_top[1], neck_top[1] + 1.2 * down, neck_top[0] + 1.2 * down])
    chest = 0.5 * (neck_top[0] + neck_top[1]) + 0.55 * down
    across = np.array([down[1], -down[0]])
    clothes = np.array([chest - 0.25 * across, chest + 0.25 * across,
                        chest + 1.4 * across + 0.9 * down, chest - 1.4 * across + 0.9 * down])
    canvas.fill(neck, skin * 0.72)
    canvas.fill(clothes, params.clothes)
    # Hair behind the head, on the head's rim but wider and higher.
    phi = np.linspace(0.0, np.pi, 15)
    if params.hair_style:
        hair_drop = 0.25 if params.hair_style == 1 else 0.9
        back = np.concatenate([
            _posed_rim(phi, EAR_LEVEL + 0.05, -(FOREHEAD_RISE + 0.15), 0.6,
                       dataclasses.replace(params, half_width=params.half_width * 1.12)),
            _posed_rim(phi[::-1], EAR_LEVEL + 0.05, hair_drop * 0.5, 1.0,
                       dataclasses.replace(params, half_width=params.half_width * 1.12)),
        ])
        canvas.fill(back, params.hair * 0.8)
    # Ears on the rim at the ear level; the far one only when it can be seen.
    for side, phi_ear in ((0, 0.0), (16, np.pi)):
        if abs(params.yaw) > np.deg2rad(22) and np.sign(params.yaw) == (1 if side else -1):
            continue
        centre = _posed_rim([phi_ear], EAR_LEVEL + 0.02, 0.0, 1.0, params)[0]
        outward = np.sign(centre[0] - lm[30, 0]) * np.array([np.cos(params.roll),
                                                             np.sin(params.roll)])
        canvas.ellipse(centre + 0.03 * outward, (0.055, 0.1), np.rad2deg(params.roll), skin * 0.85)
    # Face: jaw landmarks below, the forehead's rim above, shaded darker towards the edge.
    forehead = _posed_rim(np.linspace(np.pi, 0.0, 15)[1:-1], EAR_LEVEL, -FOREHEAD_RISE, 0.6, params)
    outline = np.concatenate([lm[_JAW], forehead])
    size = canvas.image.shape[0]
    mask = np.zeros((size, size), np.uint8)
    canvas.fill(outline, (255, 255, 255), image=mask)
    # Darker towards the outline (the cheeks turn away) and a light gradient across the face.
    edge = _soften(mask, 0.06 * canvas.unit).astype(np.float32) / 255.0
    shade = 0.68 + 0.32 * np.clip(2.0 * edge - 1.0, 0.0, 1.0)
    centre = canvas.px(lm[30]).astype(np.float32)
    ramp = np.arange(size, dtype=np.float32)
    light = params.light.astype(np.float32) / np.float32(canvas.unit)
    shade *= 1.0 + (light[0] * (ramp[None, :] - centre[0]) + light[1] * (ramp[:, None] - centre[1]))
    canvas.blend(skin.astype(np.float32) * shade[..., None], mask)
    if params.hair_style:
        # A fringe down to the hairline, cut by the forehead outline.
        front = _posed_rim(np.linspace(np.pi, 0.0, 15), EAR_LEVEL + 0.02,
                           -(FOREHEAD_RISE + 0.1), 0.6, params)
        line_phi = np.linspace(0.0, np.pi, 11)
        hairline = _posed_rim(line_phi, params.hairline + 0.1, -0.1, 1.0,
                              dataclasses.replace(params, half_width=params.half_width * 1.02))
        fringe = np.concatenate([front, hairline])
        layer = canvas.image.copy()
        canvas.fill(fringe, params.hair, image=layer)
        canvas.blend(layer, mask)


def _draw_features(canvas: _Canvas, lm: np.ndarray, params: FaceParams):
    skin = params.skin
    for brow in (lm[17:22], lm[22:27]):
        canvas.line(brow, params.brows, params.brow_thickness)
    # Eyes: sclera inside the lids, iris clipped to it, dark upper lid, lighter lower lid.
    size = canvas.image.shape[0]
    for eye in _EYES:
        points = lm[eye]
        mask = np.zeros((size, size), np.uint8)
        canvas.fill(points, (255, 255, 255), image=mask)
        layer = np.empty_like(canvas.image)
        layer[:] = _colour(0.88 * np.array([235.0, 232.0, 228.0]) + 0.12 * skin)
        width = np.linalg.norm(points[3] - points[0])
        centre = 0.5 * (points[0] + points[3]) + params.gaze * np.array([0.25, 0.1]) * width
        centre[0] += 0.15 * np.sin(params.yaw) * width
        canvas.ellipse(centre, (0.045, 0.045), 0.0, params.iris, image=layer)
        canvas.ellipse(centre, (0.018, 0.018), 0.0, (12, 10, 10), image=layer)
        canvas.blend(layer, mask)
        canvas.line(points[[0, 1, 2, 3]], skin * 0.22, 0.014)
        canvas.line(points[[3, 4, 5, 0]], skin * 0.62, 0.008)
    # Nose: a shaded bridge on the side away from the light, a light tip, nostrils, the base.
    away = -np.sign(params.light[0] + 1e-3) * np.array([np.cos(params.roll), np.sin(params.roll)])
    bridge = np.concatenate([lm[27:31], lm[[31 if away[0] < 0 else 35]]]) + 0.015 * away
    layer = canvas.image.copy()
    mask = np.zeros((size, size), np.uint8)
    for image, shadow, highlight in ((layer, skin * 0.6, skin * 1.15), (mask, (255,), (255,))):
        canvas.line(bridge, shadow, 0.025, image=image)
        canvas.ellipse(lm[30], (0.03, 0.025), np.rad2deg(params.roll), highlight, image=image)
    canvas.blend(layer, mask, alpha=0.75)
    canvas.line(lm[31:36], skin * 0.55, 0.01)
    for i in (32, 34):
        canvas.ellipse(lm[i] + 0.3 * (lm[30] - lm[i]), (0.022, 0.012), np.rad2deg(params.roll),
                       skin * 0.3)
    # Mouth: lips between the contours; teeth and a dark interior when open, a lip line otherwise.
    canvas.fill(lm[48:60], params.lips)
    inner = lm[60:68]
    gap = np.linalg.norm(lm[66] - lm[62]) * canvas.unit
    if gap > 1.5:
        canvas.fill(inner, params.lips * 0.18)
        teeth = np.array([lm[61], lm[62], lm[63], lm[63] + 0.35 * (lm[65] - lm[63]),
                          lm[61] + 0.35 * (lm[67] - lm[61])])
        canvas.fill(teeth, (225, 222, 210))
    canvas.line(lm[[48, 60, 61, 62, 63, 64, 54]], params.lips * 0.4, 0.008)


def _draw_occluder(canvas: _Canvas, lm: np.ndarray, params: FaceParams,
                   rng: np.random.Generator) -> np.ndarray:
    """Draws the occluder over the face; returns its uint8 mask (255 where it covers)."""
    size = canvas.image.shape[0]
    mask = np.zeros((size, size), np.uint8)
    if params.occluder == "none":
        return mask
    layer = canvas.image.copy()
    target = lm[rng.choice([33, 40, 47, 57, 62, 3, 13, 8])] + rng.normal(0, 0.06, 2)
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-direction[1], direction[0]])
    if params.occluder == "hand":
        colour = params.skin * rng.uniform(0.85, 1.1, 3)
        palm = target - direction * 0.12
        spread = np.arange(4) - 1.5
        bases = palm + direction * 0.08 + across * spread[:, None] * 0.065
        tips = (bases + direction * rng.uniform(0.14, 0.22, (4, 1))
                + across * spread[:, None] * 0.02)
        for image, fill in ((layer, colour), (mask, (255, 255, 255))):
            canvas.ellipse(palm, (0.16, 0.12), np.rad2deg(angle), fill, image=image)
            canvas.ellipse(palm - direction * 0.3, (0.3, 0.1), np.rad2deg(angle), fill, image=image)
            for base, tip in zip(bases, tips, strict=True):
                canvas.line(np.array([base, tip]), fill, 0.055, image=image)
        for k in range(3):
            base = palm + direction * 0.08 + across * (k - 1.0) * 0.065
            canvas.line(np.array([base, base + direction * 0.12]), colour * 0.75, 0.006,
                        image=layer)
    else:
        half = rng.uniform(0.05, 0.12)
        bar = np.array([target - direction * 0.9 - across * half,
                        target + direction * 0.9 - across * half,
                        target + direction * 0.9 + across * half,
                        target - direction * 0.9 + across * half])
        colour = rng.uniform(0, 255, 3)
        canvas.fill(bar, colour, image=layer)
        canvas.fill(bar, (255, 255, 255), image=mask)
        for _ in range(rng.integers(0, 6)):
            stripe = target + direction * rng.uniform(-0.8, 0.8)
            canvas.line(np.array([stripe - across * half, stripe + across * half]),
                        colour * 0.6, 0.01, image=layer)
    canvas.blend(layer, mask)
    return mask


def render_face(params: FaceParams, rng: np.random.Generator, size: int):
    """Draws the face as a stored crop: the face box's square of ``STORED_CONTEXT`` fills the image.

    Args:
      params: the face, from :func:`sample_face`.
      rng: draws the background, the occluder's placement and the pixel noise.
      size: side S of the square image in pixels.

    Returns:
      ``(image, landmarks, extras)``: (S, S, 3) uint8 RGB; (68, 2) float64 pixel coordinates;
      ``extras`` with ``box`` (4,) the detector-like face box in pixels (centred, its longer side
      ``S / STORED_CONTEXT``, so :func:`awing_jax.crop.face_square_matrix` of it is the identity),
      ``occluded`` (68,) bool for points under the occluder and ``pose`` (3,) float32 yaw, pitch,
      roll in degrees.
    """
    head = face_landmarks(params)
    box = detector_box(head, params)
    scale = size / crop.STORED_CONTEXT / max(box[2] - box[0], box[3] - box[1])
    centre = 0.5 * (box[:2] + box[2:])
    shift = (size - 1) / 2.0 - scale * centre
    to_pixels = np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]]])
    canvas = _Canvas(_background(rng, size), to_pixels)
    _draw_head(canvas, head, params)
    _draw_features(canvas, head, params)
    mask = _draw_occluder(canvas, head, params, rng)
    image = canvas.image.astype(np.float32)
    if params.blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), params.blur_sigma * size / 256)
    if params.noise_std > 0:
        # Uniform noise of that standard deviation: as good as Gaussian here, 5x cheaper to draw.
        noise = rng.integers(0, 256, image.shape, dtype=np.uint8).astype(np.float32) - 127.5
        image += noise * np.float32(params.noise_std * np.sqrt(12.0) / 256.0)
    landmarks_px = crop.apply(to_pixels, head)
    inside = np.all((landmarks_px >= 0) & (landmarks_px <= size - 1), axis=1)
    rounded = np.clip(np.round(landmarks_px).astype(int), 0, size - 1)
    occluded = inside & (mask[rounded[:, 1], rounded[:, 0]] > 127)
    extras = {
        "box": crop.apply(to_pixels, box.reshape(2, 2)).reshape(4),
        "occluded": occluded,
        "pose": np.rad2deg([params.yaw, params.pitch, params.roll]).astype(np.float32),
    }
    return np.clip(image, 0, 255).astype(np.uint8), landmarks_px, extras
