"""WFLW (98 landmarks): see :mod:`datasets.wflw.wflw`."""

from .wflw import Wflw as Builder

__all__ = ["Builder"]
