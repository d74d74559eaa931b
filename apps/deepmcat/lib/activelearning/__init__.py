from .strategies import ClusterRepresentative, LabelConflict, LeastConfident

__all__ = ["ClusterRepresentative", "LabelConflict", "LeastConfident"]
