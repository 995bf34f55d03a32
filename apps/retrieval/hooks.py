"""Per-method wiring that the generic training step cannot express, one small hook per method.

The trainer looks up ``TRAINING_HOOKS`` under the chosen loss name and then the chosen sampler name and calls
every hook found, in that order:

- ``before_epoch(embed, labels)`` before each epoch's batches are drawn; ``embed()`` returns the current
  embeddings (N, D) of the whole training set in dataset order (computed at most once per epoch, and only when a
  hook asks), ``labels`` (N,) their classes;
- ``batch_triplets(batch_size)``: triplets for the loss, as positions in this process's share of the batch (of
  ``batch_size`` items), or None (the loss then mines its own);
- ``extra_losses(embeddings, labels, gather)``: weighted loss terms added to the batch's loss;
- ``after_step(embeddings, labels, triplets)``: feedback after the loss, returns values to log.

Under DDP (torchrun) each process holds a share of every batch, but ``extra_losses`` and ``after_step`` see the
whole batch, as every process does: ``embeddings`` (N, D) and ``labels`` (N,) are the shares concatenated in rank
order, ``triplets`` the processes' triplets moved to their share's place in it, and ``gather(values)`` turns
per-item values of this process's share (n, ...) into the whole batch's (N, ...). A single process's share is the
whole batch.

Hooks are modules inside the trained learner, so state kept in their buffers is checkpointed and resumed with
the model. A new hook is a :class:`TrainingHook` subclass registered under its component's name:
``@TRAINING_HOOKS.register("my_sampler")``, constructed as ``cls(cfg, parts)`` once the components are built
(see ``apps.retrieval.components``).
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Callable, Optional

import torch
from torch import nn

from metric.class_tree import ClassTree
from metric.index_means import index_means
from metric.distances.euclidean import EuclideanDistance
from metric.losses import (HierarchicalTripletLoss, RepresentativeProximityLoss, TripletUpperBoundLoss,
                           triplet_margin_loss)
from metric.miners import TripletIndices
from metric.registry import Registry
from metric.samplers import SmartMiningBatchSampler

if TYPE_CHECKING:
    from apps.retrieval.components import Parts
    from apps.retrieval.config import RetrievalTrainConfig

Embed = Callable[[], torch.Tensor]
Gather = Callable[[torch.Tensor], torch.Tensor]
TRAINING_HOOKS: Registry = Registry("training hook")


class TrainingHook(nn.Module):
    """No-op defaults of every hook method; a hook overrides the ones it needs. ``options``: the config fields
    the hook reads besides its component's constructor arguments (so setting them is not reported as unused)."""

    options: tuple[str, ...] = ()

    def before_epoch(self, embed: Embed, labels: torch.Tensor) -> None:
        """Refresh what depends on the whole training set's embeddings."""

    def batch_triplets(self, batch_size: int) -> Optional[TripletIndices]:
        return None

    def extra_losses(self, embeddings: torch.Tensor, labels: torch.Tensor, gather: Gather) -> dict[str, torch.Tensor]:
        return {}

    def after_step(self, embeddings: torch.Tensor, labels: torch.Tensor,
                   triplets: Optional[TripletIndices]) -> dict[str, torch.Tensor]:
        return {}


@TRAINING_HOOKS.register("smart_mining")
class SmartMiningHook(TrainingHook):
    """Smart mining (Harwood et al. 2017): rebuild the miner's graph index from the whole training set every
    epoch, hand the loss the sampler's mined triplets, and feed the adaptive controller the share of active
    triplets — those with a non-zero triplet hinge at ``ACTIVE_MARGIN`` in Euclidean distance, the distance the
    index searches. The controller's offset is kept in a buffer (checkpointed, resumed)."""

    ACTIVE_MARGIN = 0.1

    def __init__(self, cfg: "RetrievalTrainConfig", parts: "Parts") -> None:
        super().__init__()
        if parts.miner is not None:
            raise ValueError("the smart_mining sampler mines the triplets over the whole training set: --miner does "
                             "not apply (leave it unset)")
        if "triplets" not in inspect.signature(parts.loss.forward).parameters:
            raise ValueError(f"loss {type(parts.loss).__name__} cannot take the triplets the smart_mining sampler "
                             "mines: choose a triplet loss (triplet_margin, global, hierarchical_triplet)")
        self.sampler: SmartMiningBatchSampler = parts.sampler
        self.controller = self.sampler.miner.controller
        self.distance = EuclideanDistance()
        self.register_buffer("offset", torch.tensor(float(self.controller.offset) if self.controller else 0.0))

    def before_epoch(self, embed: Embed, labels: torch.Tensor) -> None:
        if self.controller is not None:
            self.controller.offset = float(self.offset)
        self.sampler.miner.update(embed(), labels)

    def batch_triplets(self, batch_size: int) -> Optional[TripletIndices]:
        return self.sampler.batch_triplets(batch_size)

    def after_step(self, embeddings: torch.Tensor, labels: torch.Tensor,
                   triplets: Optional[TripletIndices]) -> dict[str, torch.Tensor]:
        hinge = triplet_margin_loss(embeddings.detach().float(), triplets, self.ACTIVE_MARGIN, self.distance)
        active = (hinge > 0).float().mean()
        if self.controller is not None:
            self.offset.fill_(self.controller.update(float(active)))
        return {"active": active, "offset": self.offset.clone()}


@TRAINING_HOOKS.register("class_representative")
class ClassRepresentativeHook(TrainingHook):
    """Alternating projections (Can et al. 2021): give the sampler the whole training set's embeddings each
    epoch (hard class mining by representative distance) and add ``proximity_weight`` × the proximity of each
    sample to its class representative in the batch."""

    def __init__(self, cfg: "RetrievalTrainConfig", parts: "Parts") -> None:
        super().__init__()
        self.sampler = parts.sampler
        self.weight = cfg.proximity_weight
        self.proximity = RepresentativeProximityLoss(distance=parts.distance)

    def before_epoch(self, embed: Embed, labels: torch.Tensor) -> None:
        self.sampler.update_embeddings(embed())

    def extra_losses(self, embeddings: torch.Tensor, labels: torch.Tensor, gather: Gather) -> dict[str, torch.Tensor]:
        if not self.weight:
            return {}
        mask = gather(self.sampler.representative_mask.to(embeddings.device))
        if mask.numel() != embeddings.shape[0]:
            raise RuntimeError(f"batch of {embeddings.shape[0]} items but the sampler's batches hold {mask.numel()}")
        return {"proximity": self.weight * self.proximity(embeddings, labels, mask)}


@TRAINING_HOOKS.register("hierarchical_triplet")
class ClassTreeHook(TrainingHook):
    """Hierarchical triplet loss (Ge et al. 2018): rebuild the loss's class tree from the whole training set's
    embeddings every epoch."""

    def __init__(self, cfg: "RetrievalTrainConfig", parts: "Parts") -> None:
        super().__init__()
        self.loss: HierarchicalTripletLoss = parts.loss

    def before_epoch(self, embed: Embed, labels: torch.Tensor) -> None:
        self.loss.update_tree(embed(), labels)


@TRAINING_HOOKS.register("hierarchical")
class TreeSamplingHook(TrainingHook):
    """Anchor-neighbour class sampling (Ge et al. 2018): give the sampler the class tree every epoch — the
    hierarchical loss's own tree (its hook runs first), or one built here for another loss."""

    DEFAULT_LEVELS = 16
    options = ("num_levels",)

    def __init__(self, cfg: "RetrievalTrainConfig", parts: "Parts") -> None:
        super().__init__()
        self.sampler = parts.sampler
        self.loss = parts.loss
        self.distance = parts.distance
        self.num_levels = cfg.num_levels or self.DEFAULT_LEVELS

    def before_epoch(self, embed: Embed, labels: torch.Tensor) -> None:
        if isinstance(self.loss, HierarchicalTripletLoss):
            tree = self.loss.tree
        else:
            tree, _ = ClassTree.from_embeddings(embed(), labels, self.num_levels, self.distance)
        self.sampler.set_tree(tree)


@TRAINING_HOOKS.register("triplet_upper_bound")
class CentroidAlignmentHook(TrainingHook):
    """Triplet upper bound: before the first epoch, turn the loss's fixed centroids rigidly to the class means of
    the training embeddings (``TripletUpperBoundLoss.align_centroids``), so that the simplex starts where the
    classes already are instead of along the first coordinate axes. Done once: a buffer records it, so a resumed
    run keeps the centroids of its checkpoint. Config ``align_centroids`` (default on)."""

    options = ("align_centroids",)

    def __init__(self, cfg: "RetrievalTrainConfig", parts: "Parts") -> None:
        super().__init__()
        if not isinstance(parts.loss, TripletUpperBoundLoss):
            raise TypeError(f"the triplet_upper_bound hook needs a TripletUpperBoundLoss, got "
                            f"{type(parts.loss).__name__}")
        self.loss = parts.loss
        self.enabled = cfg.align_centroids is not False
        self.register_buffer("aligned", torch.tensor(False))

    def before_epoch(self, embed: Embed, labels: torch.Tensor) -> None:
        if not self.enabled or bool(self.aligned):
            return
        embeddings = embed().to(self.loss.centroids.device, torch.float64)
        self.loss.align_centroids(index_means(embeddings, labels.to(embeddings.device), len(self.loss.centroids)))
        self.aligned.fill_(True)
