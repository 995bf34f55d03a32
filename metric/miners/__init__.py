"""Triplet miners of a batch (index triplets, registered in ``metric.registry.MINERS``), pixel sampling for the
pixel-level loss, and smart mining over a whole training set with its adaptive hardness controller."""
from metric.miners.base_miner import BaseTripletMiner, TripletIndices
from metric.miners.margin_miner import MarginMiner
from metric.miners.batch_all import BatchAllMiner
from metric.miners.batch_hard import BatchHardMiner
from metric.miners.semi_hard import SemiHardMiner
from metric.miners.pixel_sampler import PixelSample, sample_pixels
from metric.miners.adaptive_controller import AdaptiveHardnessController
from metric.miners.smart_miner import SmartMiner

__all__ = [
    "AdaptiveHardnessController", "BaseTripletMiner", "BatchAllMiner", "BatchHardMiner", "MarginMiner", "PixelSample",
    "SemiHardMiner", "SmartMiner", "TripletIndices", "sample_pixels",
]
