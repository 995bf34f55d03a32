"""Metric-learning core: distances, losses, miners, samplers, retrieval metrics. Pure tensors."""
from metric._checks import NonFiniteError

__all__ = ["NonFiniteError"]
