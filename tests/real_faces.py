"""Real photographs that installed packages ship, with their faces' boxes annotated by hand.

scikit-image ships ``astronaut`` (a frontal face) and ``camera`` (a man in near-profile, looking
down into a camera, face about 60 px high); Matplotlib ships ``grace_hopper.jpg`` (frontal, with
glasses). The other photos below contain no human face (a cat, a cup, a rocket, textures...) and
count false positives. Boxes are ``(x1, y1, x2, y2)`` pixel-centre coordinates of the face from
the brows to the chin and cheek to cheek (the nose tip for the profile), read off an enlarged grid.

:func:`hard_cases` derives harder views of the same faces: tilted by ±30° and shrunk so that the
face is about 30 px high on a 640 x 480 photo, with the boxes carried along exactly.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

FACE_BOXES = {
    "astronaut": [(178.0, 88.0, 253.0, 180.0)],
    "camera": [(200.0, 135.0, 256.0, 198.0)],
    "grace_hopper": [(190.0, 170.0, 352.0, 328.0)],
}
NO_FACE = ("coffee", "chelsea", "rocket", "motorcycle_left", "brick", "grass", "gravel",
           "hubble_deep_field", "coins", "clock", "page", "immunohistochemistry")


def load(name: str) -> np.ndarray:
    """The (H, W, 3) uint8 RGB photo ``name`` (grey photos are repeated into three channels)."""
    if name == "grace_hopper":
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        image = cv2.cvtColor(cv2.imread(os.fspath(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    elif name == "motorcycle_left":
        import skimage.data

        image = skimage.data.stereo_motorcycle()[0]
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def _warp_boxes(boxes, matrix) -> list[tuple[float, ...]]:
    """Boxes through a similarity: the same-size box around the mapped centre (scaled)."""
    out = []
    scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    for x1, y1, x2, y2 in boxes:
        cx, cy = matrix @ np.array([(x1 + x2) / 2, (y1 + y2) / 2, 1.0])
        hw, hh = (x2 - x1) * scale / 2, (y2 - y1) * scale / 2
        out.append((cx - hw, cy - hh, cx + hw, cy + hh))
    return out


def rotated(name: str, degrees: float):
    """The photo rotated by ``degrees`` about its centre (same size) and its face boxes."""
    image = load(name)
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    return out, _warp_boxes(FACE_BOXES[name], matrix)


def small(name: str, face_height: float = 30.0, size=(640, 480)):
    """The photo shrunk so that its first face is ``face_height`` px high, placed at the centre
    of a ``size`` photo of grass, and its face boxes."""
    image = load(name)
    box = FACE_BOXES[name][0]
    scale = face_height / (box[3] - box[1])
    width, height = size
    background = cv2.resize(load("grass"), (width, height), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    tx, ty = (width - w * scale) / 2, (height - h * scale) / 2
    matrix = np.array([[scale, 0.0, tx], [0.0, scale, ty]])
    shrunk = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_AREA,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = cv2.warpAffine(np.ones((h, w), np.uint8), matrix, (width, height),
                          flags=cv2.INTER_NEAREST, borderValue=0)
    out = np.where(mask[..., None] > 0, shrunk, background)
    return out, _warp_boxes(FACE_BOXES[name], matrix)


def cases() -> list[tuple[str, np.ndarray, list]]:
    """(label, photo, face boxes) of every photo: faces as shipped, then the photos without."""
    out = [(name, load(name), list(boxes)) for name, boxes in FACE_BOXES.items()]
    return out + [(name, load(name), []) for name in NO_FACE]


def hard_cases() -> list[tuple[str, np.ndarray, list]]:
    """(label, photo, face boxes): the frontal faces tilted ±30°, every face shrunk to 30 px."""
    out = []
    for name in ("astronaut", "grace_hopper"):
        for degrees in (-30, 30):
            out.append((f"{name} tilted {degrees:+d}°", *rotated(name, degrees)))
    for name in FACE_BOXES:
        out.append((f"{name} 30 px", *small(name)))
    return out


def iou(a, b) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(detected, truth, min_iou: float = 0.3) -> tuple[int, int]:
    """(true faces found, false detections): greedy one-to-one matching at ``min_iou``.

    Detectors disagree on where a face box ends (brows or hairline, chin or neck), so a found face
    is one whose detection overlaps the hand-drawn box by IoU >= ``min_iou``."""
    unmatched = list(range(len(truth)))
    false = 0
    for box in detected:
        scores = [iou(box, truth[i]) for i in unmatched]
        if scores and max(scores) >= min_iou:
            unmatched.pop(int(np.argmax(scores)))
        else:
            false += 1
    return len(truth) - len(unmatched), false
