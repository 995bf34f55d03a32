"""Metric-learning core: distances, losses, miners, samplers, retrieval metrics. Pure tensors."""
