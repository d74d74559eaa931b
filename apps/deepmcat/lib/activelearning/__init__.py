from .strategies import ClusterStrategy

__all__ = ["ClusterStrategy"]
