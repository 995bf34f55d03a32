"""From a config to a method's training components — distance, miner, loss, regularisers, batch sampler and hooks —
each built from its registry name with the constructor arguments it takes.

Arguments are matched to constructor parameters by name: the trainer offers everything it knows (the tunable
options of the config, the number of classes, the labels, the DDP rank, ...) and each component takes what its
signature names. Tunable options left unset keep the component's default; one that is set but taken by no
component (nor read by a hook of the method) is an error naming the components, so nothing is silently ignored; so
is one of a single sampler's options with a default of its own (``DEFAULTED``) set to another value, and
``loss_lr`` set to another value for a loss without parameters of its own.
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import Sampler

from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.hooks import TRAINING_HOOKS, TrainingHook, super_classes_of
from coseg.engine import ConfigError, usage_errors
import metric.losses  # noqa: F401  (the imports register the components by name)
import metric.samplers  # noqa: F401
from metric.distances import BaseDistance
from metric.losses import ISTripletLoss, TripletUpperBoundLoss, ZeroMeanRegularizer
from metric.miners import AdaptiveHardnessController, SmartMiner
from metric.registry import BATCH_SAMPLERS, DISTANCES, LOSSES, MINERS, check_arguments

# Config fields passed to the components whose constructors name them; None = the component's default.
TUNABLE = ("margin", "beta", "num_levels", "centers_per_class", "la", "gamma", "tau", "scale", "lam",
           "iterations_per_representative", "classes_per_anchor", "num_neighbours")
# Config fields of one sampler's with a value of their own by default: unused when set to another one.
DEFAULTED = ("target_active", "controller_gain", "proximity_weight")


@dataclass(frozen=True)
class Lazy:
    """An offered argument built only if a constructor takes it."""

    build: Callable[[], Any]


@dataclass
class Parts:
    """The components of one method. ``miner`` is None when the loss mines its own default triplets;
    ``regularizers`` are added to the loss with their own weights; ``hooks`` in call order (loss, then sampler);
    ``super_classes`` (C,): the super-class of each class label, when the data set has them (SOP) and the
    ``class_tree`` ``super_classes`` uses them."""

    distance: Optional[BaseDistance]
    miner: Optional[nn.Module]
    loss: nn.Module
    sampler: Sampler
    regularizers: dict[str, nn.Module] = field(default_factory=dict)
    hooks: list[TrainingHook] = field(default_factory=list)
    super_classes: Optional[torch.Tensor] = None


def create_component(factory: Callable[..., Any], what: str, arguments: Mapping[str, Any],
                     taken: set[str], options_only: bool = False) -> Any:
    """``factory(**the entries of arguments its signature names)``, skipping None values and building
    :class:`Lazy` ones; the names passed are added to ``taken``. A required parameter the arguments do not
    supply, or a value that does not fit its parameter's annotation, raises ``ConfigError`` naming ``what``; with
    ``options_only`` (no argument comes from the data) so does a value the factory refuses (``ValueError``)."""
    params = inspect.signature(factory).parameters
    kwargs = {}
    for name, value in arguments.items():
        if name in params and value is not None:
            kwargs[name] = value.build() if isinstance(value, Lazy) else value
            taken.add(name)
    missing = [n for n, p in params.items() if p.default is p.empty and n not in kwargs
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        raise ConfigError(f"{what} needs {', '.join(missing)}, which the retrieval trainer does not supply")
    try:
        check_arguments(factory, kwargs, what)
    except TypeError as error:
        raise ConfigError(str(error)) from None
    with usage_errors(what) if options_only else contextlib.nullcontext():
        return factory(**kwargs)


def build_components(cfg: RetrievalTrainConfig, labels: torch.Tensor, num_classes: int, rank: int = 0,
                     world_size: int = 1, embedding_dim: Optional[int] = None,
                     super_labels: Optional[torch.Tensor] = None,
                     class_names: Optional[Sequence[str]] = None) -> Parts:
    """The components of ``cfg``'s method for training labels ``labels`` (N,) in [0, num_classes), for embeddings
    of ``embedding_dim`` (default ``cfg.embedding_dim``; pass the model's when the config says 0); ``super_labels``
    (N,): the super-class of each item, when the data set has them, made the super-class of each class (refused for
    a class, named by ``class_names``, in two of them) only for ``class_tree`` ``super_classes``, which uses it."""
    embedding_dim = embedding_dim or cfg.embedding_dim
    if embedding_dim < 1:
        raise ValueError("embedding_dim 0 (the backbone's feature size) must be resolved: pass the model's")
    tunable = {name: getattr(cfg, name) for name in TUNABLE}
    taken: set[str] = set()
    distance = DISTANCES.create(cfg.distance) if cfg.distance else None
    miner = None
    if cfg.miner and cfg.miner != "none":
        miner = create_component(MINERS.get(cfg.miner), f"miner '{cfg.miner}'",
                                 {"distance": distance, "margin": cfg.margin}, taken, options_only=True)
    loss_taken: set[str] = set()
    loss = create_component(LOSSES.get(cfg.loss), f"loss '{cfg.loss}'", {
        **tunable, "distance": distance, "miner": miner, "num_classes": num_classes,
        "embedding_size": embedding_dim}, loss_taken, options_only=True)
    if isinstance(loss, ISTripletLoss):
        raise ConfigError(f"loss '{cfg.loss}' compares the pixels of per-pixel embedding maps (B, D, H, W): it trains "
                          "co-segmentation (`coseg train`), not one embedding per image; choose another --loss")
    if isinstance(loss, ZeroMeanRegularizer):
        raise ConfigError(f"loss '{cfg.loss}' is the zero-mean regulariser: it ignores the labels, so alone it learns "
                          "nothing of the classes; choose another --loss and add it with --zero-mean-weight")
    if miner is not None and "miner" not in loss_taken:
        raise ConfigError(f"loss '{cfg.loss}' does not take a miner: leave --miner unset")
    needs = [n for n, p in list(inspect.signature(loss.forward).parameters.items())[2:] if p.default is p.empty]
    if needs:
        raise ConfigError(f"loss '{cfg.loss}' needs {', '.join(needs)} besides embeddings and labels: it is not a "
                          "loss to train with on its own (e.g. a regulariser a sampler's hook adds)")
    taken |= loss_taken
    if any(p.requires_grad for p in loss.parameters()):  # SoftTriple's centres: trained at --loss-lr
        taken.add("loss_lr")

    def smart_miner() -> SmartMiner:
        with usage_errors(f"--target-active {cfg.target_active}, --controller-gain {cfg.controller_gain}"):
            controller = AdaptiveHardnessController(target_active=cfg.target_active, gain=cfg.controller_gain)
        taken.update(("target_active", "controller_gain"))
        return create_component(SmartMiner, "smart miner", {"num_neighbours": cfg.num_neighbours,
                                "controller": controller, "seed": cfg.seed}, taken, options_only=True)

    sampler_class = BATCH_SAMPLERS.get(cfg.sampler)
    sampler_params = inspect.signature(sampler_class).parameters
    # the upper bound is that of the batch's triplets: 0 as theirs without a positive or a negative
    in_batch = "miner" in inspect.signature(type(loss)).parameters or isinstance(loss, TripletUpperBoundLoss)
    if cfg.samples_per_class < 2 and in_batch and "samples_per_class" in sampler_params:
        raise ConfigError(f"loss '{cfg.loss}' takes its triplets within a batch, and with --samples-per-class "
                          f"{cfg.samples_per_class} no image of a batch has a positive (another of its class): the "
                          "loss would be 0 at every step. Give --samples-per-class 2 or more, or a loss with class "
                          "proxies (soft_triple)")
    if cfg.classes_per_batch < 2 and in_batch and "classes_per_batch" in sampler_params:
        raise ConfigError(f"loss '{cfg.loss}' takes its triplets within a batch, and with --classes-per-batch "
                          f"{cfg.classes_per_batch} no image of a batch has a negative (one of another class): the "
                          "loss would be 0 at every step. Give --classes-per-batch 2 or more, or a loss with class "
                          "proxies (soft_triple)")
    classes = int(labels.unique().numel())
    if "classes_per_batch" in sampler_params and cfg.classes_per_batch > classes:
        raise ConfigError(f"--classes-per-batch {cfg.classes_per_batch}, but training has {classes} class(es) (those "
                          f"not held out for validation): lower --classes-per-batch to at most {classes}")
    if "classes_per_anchor" in sampler_params and (cfg.classes_per_anchor or 0) > classes:
        raise ConfigError(f"--classes-per-anchor {cfg.classes_per_anchor}, but training has {classes} class(es) "
                          f"(those not held out for validation): lower --classes-per-anchor to at most {classes}")
    triplets = cfg.classes_per_batch * cfg.samples_per_class // 3
    if "triplets_per_batch" in sampler_params and triplets % world_size:
        # a value of the sampler's own, not an option: say which options make it
        raise ConfigError(f"batch sampler '{cfg.sampler}' draws --classes-per-batch × --samples-per-class / 3 "
                          f"(rounded down) = {cfg.classes_per_batch} × {cfg.samples_per_class} / 3 → {triplets} "
                          f"triplet(s) per batch, which the {world_size} processes cannot share evenly (each takes "
                          f"whole triplets): make it a multiple of {world_size}")
    sampler = create_component(sampler_class, f"batch sampler '{cfg.sampler}'", {
        **tunable, "labels": labels, "classes_per_batch": cfg.classes_per_batch,
        "samples_per_class": cfg.samples_per_class,
        "triplets_per_batch": triplets,
        "miner": Lazy(smart_miner), "distance": distance, "rank": rank, "world_size": world_size, "seed": cfg.seed,
    }, taken)
    super_classes = (super_classes_of(labels, super_labels, num_classes, class_names)
                     if super_labels is not None and cfg.class_tree == "super_classes" else None)
    parts = Parts(distance, miner, loss, sampler, super_classes=super_classes)
    if cfg.zero_mean_weight:
        parts.regularizers["zero_mean"] = LOSSES.create("zero_mean", weight=cfg.zero_mean_weight)
    for name in dict.fromkeys((cfg.loss, cfg.sampler)):
        if name in TRAINING_HOOKS:
            with usage_errors(f"{'loss' if name == cfg.loss else 'batch sampler'} '{name}'"):  # it checks options only
                hook = TRAINING_HOOKS.get(name)(cfg, parts)
            parts.hooks.append(hook)
            taken |= set(hook.options)
    unused = [name for name in (*TUNABLE, "distance", "align_centroids", "class_tree")
              if getattr(cfg, name) is not None and name not in taken]
    unused += [name for name in cfg.changed(*DEFAULTED, "loss_lr") if name not in taken]
    if unused:
        flags = ", ".join("--" + name.replace("_", "-") for name in unused)
        raise ConfigError(f"{flags} set but not used by loss '{cfg.loss}', miner '{cfg.miner or 'none'}' or sampler "
                          f"'{cfg.sampler}'")
    return parts
