from .deepmcat import DeepMCATTrain

__all__ = ["DeepMCATTrain"]
