"""COFW (29 points) and its 68-point test re-annotation COFW-68."""

from .cofw import Cofw as Builder

__all__ = ["Builder"]
