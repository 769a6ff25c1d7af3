"""300W (68 landmarks): see :mod:`datasets.w300.w300`."""

from .w300 import W300 as Builder

__all__ = ["Builder"]
