"""Plain-Python logic of the DeepMCAT Slicer module (no Qt or Slicer imports): tested outside Slicer."""

from .client import DeepMCATClient, DeepMCATError

__all__ = ["DeepMCATClient", "DeepMCATError"]
