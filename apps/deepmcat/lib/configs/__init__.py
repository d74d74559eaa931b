from .deepmcat import DeepMCATTaskConfig

__all__ = ["DeepMCATTaskConfig"]
