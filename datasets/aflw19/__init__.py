"""AFLW with the 19-point annotation of AFLWinfo_release.mat."""

from .aflw19 import Aflw19 as Builder

__all__ = ["Builder"]
