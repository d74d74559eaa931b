from .cluster_scoring import ClusterScoring

__all__ = ["ClusterScoring"]
