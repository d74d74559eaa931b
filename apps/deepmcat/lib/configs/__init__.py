from .deepmcat import AppSettings, DeepMCATTaskConfig

__all__ = ["AppSettings", "DeepMCATTaskConfig"]
