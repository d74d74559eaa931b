from .category import CategoryInfer

__all__ = ["CategoryInfer"]
