"""synthetic_faces: procedural 68-point faces, the embedded default dataset (no download)."""

from .synthetic_faces import SyntheticFaces as Builder

__all__ = ["Builder"]
