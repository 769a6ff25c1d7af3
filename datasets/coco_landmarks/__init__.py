"""Your own landmarks (COCO keypoints): see :mod:`datasets.coco_landmarks.coco_landmarks`."""

from .coco_landmarks import CocoLandmarks as Builder

__all__ = ["Builder"]
