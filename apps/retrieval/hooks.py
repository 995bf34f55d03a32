"""Per-method wiring that the generic training step cannot express, one small hook per method.

The trainer looks up ``TRAINING_HOOKS`` under the chosen loss name and then the chosen sampler name and calls
every hook found, in that order:

- ``before_epoch(embed, labels)`` before each epoch's batches are drawn; ``embed()`` returns the current
  embeddings of the whole training set (computed at most once per epoch, and only when a hook asks) as an
  ``Embedded``: ``values`` (N, D) in dataset order and ``unreadable``, the (index, message) of the items whose image
  could no longer be read, whose row is the embedding of the image of their class that takes their place in the
  batches (:func:`own_rows` leaves them out); ``labels`` (N,) their classes;
- ``batch_triplets(batch_size)``: triplets for the loss, as positions in this process's share of the batch (of
  ``batch_size`` items), or None (the loss then mines its own);
- ``extra_losses(embeddings, labels, gather)``: weighted loss terms added to the batch's loss;
- ``after_step(embeddings, labels, triplets)``: feedback after the loss, returns values to log; a hook whose
  feedback changes what the sampler draws next sets ``steers_batches`` (the batches are then drawn in step with
  the training, without worker processes).

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
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import torch
from torch import nn

from apps.retrieval.inference import Embedded
from coseg.data.io import printable
from coseg.engine import ConfigError
from metric.class_tree import ClassTree, check_num_levels, check_tree_distance, class_statistics
from metric.index_means import index_means
from metric.distances import BaseDistance
from metric.distances.euclidean import EuclideanDistance
from metric.losses import (HierarchicalTripletLoss, RepresentativeProximityLoss, TripletUpperBoundLoss,
                           triplet_margin_loss)
from metric.miners import SmartMiner, TripletIndices
from metric.registry import Registry
from metric.samplers import SmartMiningBatchSampler

if TYPE_CHECKING:
    from apps.retrieval.components import Parts
    from apps.retrieval.config import RetrievalTrainConfig

Embed = Callable[[], Embedded]
Gather = Callable[[torch.Tensor], torch.Tensor]
TRAINING_HOOKS: Registry = Registry("training hook")


def own_rows(embedded: Embedded, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(indices (M,), embeddings (M, D), labels (M,)) of the items of the whole training set ``embedded`` (with its
    ``labels`` (N,)) embedded from their own image, i.e. all but its ``unreadable`` ones."""
    own = torch.ones(len(labels), dtype=torch.bool)
    own[[i for i, _ in embedded.unreadable]] = False
    rows = torch.nonzero(own).flatten()
    return rows, embedded.values[rows], labels[rows]


class ReadableMiner:
    """``miner`` indexing only the training images that could be read, addressed by dataset index as
    :class:`SmartMiningBatchSampler` asks (``num_samples``, ``mine``). An image lost during the run is left out of
    the index, so it is mined as no anchor's positive or negative, and an anchor drawn on it is mined as the image of
    its class that takes its place in the batch (the next readable one in index order, as the dataset substitutes).
    A class left with a single readable image keeps one lost row (its stand-in's embedding), so that its anchors
    still have a positive. Other attributes are ``miner``'s (``controller``, ``last_stats``, its options)."""

    def __init__(self, miner: SmartMiner) -> None:
        self.miner = miner
        self.rows = torch.empty(0, dtype=torch.long)  # dataset index of each indexed row
        # indexed row of each dataset index (a lost one: its stand-in's)
        self.position = torch.empty(0, dtype=torch.long)

    def __getattr__(self, name: str) -> Any:
        if name == "miner":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.miner, name)

    @property
    def num_samples(self) -> int:
        return len(self.position)

    def update(self, embedded: Embedded, labels: torch.Tensor) -> None:
        """Index the whole training set's ``embedded`` (N rows) with its ``labels`` (N,), but its lost images."""
        lost = torch.zeros(len(labels), dtype=torch.bool)
        lost[[i for i, _ in embedded.unreadable]] = True
        for label in labels[lost].unique():
            members = labels == label
            if int((members & ~lost).sum()) == 1:
                lost[torch.nonzero(members & lost)[0]] = False
        self.rows = torch.nonzero(~lost).flatten()
        self.miner.update(embedded.values[self.rows], labels[self.rows])
        self.position = torch.full((len(labels),), -1, dtype=torch.long)
        self.position[self.rows] = torch.arange(len(self.rows))
        for i in torch.nonzero(lost).flatten().tolist():
            peers = self.rows[labels[self.rows] == labels[i]]
            self.position[i] = self.position[int(peers[peers > i][0] if (peers > i).any() else peers[0])]

    def mine(self, anchor_ids: torch.Tensor, generator: Optional[torch.Generator] = None) -> TripletIndices:
        """:meth:`SmartMiner.mine` of the dataset indices ``anchor_ids`` (A,), in dataset indices."""
        mined = self.miner.mine(self.position[torch.as_tensor(anchor_ids, dtype=torch.long)], generator)
        return TripletIndices(*(self.rows[t] for t in mined))


class TrainingHook(nn.Module):
    """No-op defaults of every hook method; a hook overrides the ones it needs. ``options``: the config fields
    the hook reads besides its component's constructor arguments (so setting them is not reported as unused).
    ``steers_batches``: each step changes what the sampler draws next, so the trainer draws every batch after the
    step before it, in the main process (DataLoader workers would draw batches ahead, each under a state as many
    steps old as the batches in flight: the training would depend on ``--workers``)."""

    options: tuple[str, ...] = ()
    steers_batches = False

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
    index searches. The controller's offset is kept in a buffer (checkpointed, resumed). Images lost during the
    run are left out of the index: the sampler's miner is wrapped in a :class:`ReadableMiner`. Each batch is mined
    with the offset the step before it left (``steers_batches``)."""

    ACTIVE_MARGIN = 0.1
    steers_batches = True

    def __init__(self, cfg: "RetrievalTrainConfig", parts: "Parts") -> None:
        super().__init__()
        if parts.miner is not None:
            raise ConfigError("the smart_mining sampler mines the triplets over the whole training set: --miner does "
                              "not apply (leave it unset)")
        if "triplets" not in inspect.signature(parts.loss.forward).parameters:
            raise ConfigError(f"loss '{cfg.loss}' cannot take the triplets the smart_mining sampler mines: choose a "
                              "triplet loss (triplet_margin, global, hierarchical_triplet)")
        self.sampler: SmartMiningBatchSampler = parts.sampler
        self.miner = ReadableMiner(self.sampler.miner)
        self.sampler.miner = self.miner
        self.controller = self.miner.controller
        self.distance = EuclideanDistance()
        self.register_buffer("offset", torch.tensor(float(self.controller.offset) if self.controller else 0.0))

    def before_epoch(self, embed: Embed, labels: torch.Tensor) -> None:
        if self.controller is not None:
            self.controller.offset = float(self.offset)
        self.miner.update(embed(), labels)

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

    options = ("proximity_weight",)

    def __init__(self, cfg: "RetrievalTrainConfig", parts: "Parts") -> None:
        super().__init__()
        self.sampler = parts.sampler
        self.weight = cfg.proximity_weight
        self.proximity = RepresentativeProximityLoss(distance=parts.distance)

    def before_epoch(self, embed: Embed, labels: torch.Tensor) -> None:
        self.sampler.update_embeddings(embed().values)  # a row per item: a lost one's is its stand-in's

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
        self.loss.update_tree(*own_rows(embed(), labels)[1:])


def super_classes_of(labels: torch.Tensor, super_labels: torch.Tensor, num_classes: int,
                     names: Optional[Sequence[str]] = None) -> torch.Tensor:
    """(num_classes,) the super-class of each class label of the items ``labels`` (N,) whose super-classes are
    ``super_labels`` (N,) (−1 for a label no item has); ``ValueError`` for a class with items in two super-classes,
    named by ``names`` (the name of each label) when given."""
    labels, super_labels = torch.as_tensor(labels).cpu(), torch.as_tensor(super_labels).cpu()
    super_of = torch.full((num_classes,), -1, dtype=torch.long)
    super_of[labels] = super_labels
    mixed = labels[super_of[labels] != super_labels].unique()
    if len(mixed):
        label = int(mixed[0])
        raise ValueError(f"class {label if names is None else repr(printable(names[label]))} has images in two "
                         "super-classes: a class tree needs each class in one")
    return super_of


def super_class_tree(embeddings: torch.Tensor, labels: torch.Tensor, super_of: torch.Tensor,
                     distance: Optional[BaseDistance]) -> ClassTree:
    """The class tree of given super-classes (``super_of`` (C,): the super-class of each class label) over the
    classes of ``embeddings`` (N, D) with ``labels`` (N,): level 1 joins the classes of each super-class, level 2
    all. Its thresholds are the levels (1, 2), not distances: it orders neighbouring classes for the hierarchical
    sampler, which then takes the nearest centres (under ``distance``, default Euclidean) first."""
    distance = EuclideanDistance() if distance is None else distance
    classes, centres, _ = class_statistics(embeddings, labels, distance)
    groups = super_of[classes.cpu()].unique(return_inverse=True)[1]
    assignments = torch.stack([torch.arange(len(classes)), groups, torch.zeros_like(groups)]).to(centres.device)
    thresholds = torch.tensor([0.0, 1.0, 2.0], dtype=centres.dtype, device=centres.device)
    return ClassTree(classes, centres, assignments, thresholds, distance)


@TRAINING_HOOKS.register("hierarchical")
class TreeSamplingHook(TrainingHook):
    """Anchor-neighbour class sampling (Ge et al. 2018): give the sampler the class tree every epoch — the
    hierarchical loss's own tree (its hook runs first), or one built here for another loss, with ``num_levels``
    levels under ``--distance`` (both checked now, before any image is decoded: a similarity cannot build a
    tree); with ``class_tree`` ``super_classes``, the tree of the data set's super-classes
    (:func:`super_class_tree`), for any loss."""

    DEFAULT_LEVELS = 16
    CLASS_TREES = ("embeddings", "super_classes")
    options = ("num_levels", "distance", "class_tree")

    def __init__(self, cfg: "RetrievalTrainConfig", parts: "Parts") -> None:
        super().__init__()
        self.sampler = parts.sampler
        self.loss = parts.loss
        self.distance = parts.distance
        self.num_levels = self.DEFAULT_LEVELS if cfg.num_levels is None else cfg.num_levels
        check_num_levels(self.num_levels)
        if cfg.class_tree not in (None, *self.CLASS_TREES):
            raise ValueError(f"class_tree {cfg.class_tree!r} is unknown; valid: {', '.join(self.CLASS_TREES)}")
        self.super_classes: Optional[torch.Tensor] = None
        if cfg.class_tree == "super_classes":
            if parts.super_classes is None:
                raise ValueError("class_tree super_classes: the training data has no super-classes (layout sop has "
                                 "them: the super_class_id of Ebay_train.txt); use class_tree embeddings")
            self.super_classes = parts.super_classes
            self.options = ("distance", "class_tree")  # no tree of levels is built: num_levels would be unused
        if self.distance is not None and (self.super_classes is not None
                                          or not isinstance(self.loss, HierarchicalTripletLoss)):
            check_tree_distance(self.distance)

    def before_epoch(self, embed: Embed, labels: torch.Tensor) -> None:
        if self.super_classes is not None:
            tree = super_class_tree(*own_rows(embed(), labels)[1:], self.super_classes, self.distance)
        elif isinstance(self.loss, HierarchicalTripletLoss):
            tree = self.loss.tree
        else:
            tree, _ = ClassTree.from_embeddings(*own_rows(embed(), labels)[1:], self.num_levels, self.distance)
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
        _, embeddings, own = own_rows(embed(), labels)
        embeddings = embeddings.to(self.loss.centroids.device, torch.float64)
        self.loss.align_centroids(index_means(embeddings, own.to(embeddings.device), len(self.loss.centroids)))
        self.aligned.fill_(True)
