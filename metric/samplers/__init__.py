"""Batch samplers yielding lists of data set indices built from class blocks, sharded over DDP ranks; registered in
``metric.registry.BATCH_SAMPLERS``."""
from metric.samplers.sharding import ClassBlockBatchSampler, ShardedBatchSampler, shard_blocks
from metric.samplers.pk_sampler import PKBatchSampler
from metric.samplers.class_representative_sampler import ClassRepresentativeBatchSampler
from metric.samplers.hierarchical_class_sampler import HierarchicalClassBatchSampler
from metric.samplers.smart_mining_sampler import SmartMiningBatchSampler

__all__ = [
    "ClassBlockBatchSampler", "ClassRepresentativeBatchSampler", "HierarchicalClassBatchSampler", "PKBatchSampler",
    "ShardedBatchSampler", "SmartMiningBatchSampler", "shard_blocks",
]
