from .deepmcat import DeepMCATInfer

__all__ = ["DeepMCATInfer"]
