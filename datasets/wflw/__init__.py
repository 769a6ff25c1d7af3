"""WFLW (98 landmarks): see :mod:`datasets.wflw.wflw`."""

from datasets.wflw.wflw import Wflw as Builder

__all__ = ["Builder"]
