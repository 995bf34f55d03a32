"""Configuration of a retrieval training run. Each field's ``help`` is shown by ``coseg retrieval train --help``.

Component options left unset (None) keep the default of the component that takes them (see metric/); setting
one that no chosen component takes is an error, so a typo or a mismatched option never goes unnoticed."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Optional

from coseg.config import INPUT_NORMALIZATION_HELP, check_input_normalization, option


@dataclass
class RetrievalTrainConfig:
    # --- data -------------------------------------------------------------------------------------------------
    data: str = option("", "Data set root folder; required (on the command line or in --config).", path=True)
    layout: str = option("auto", "Data layout: cub, cars, sop, folders, or auto (detect).")
    output: str = option("runs/retrieval", "Run folder: config.yaml, log.csv, last.*/best.* checkpoints.", path=True)
    overwrite: bool = option(False, "Train anew into an --output folder that already holds a run (its fine-tuning "
                                    "stage too); default: refuse, so a finished run is not lost (--resume continues "
                                    "it).")
    train_split: str = option("train", "Split to train on (official layouts: train; folders: a key of splits.json).")
    train_classes: list[str] = option([], "Class folders forming the training split, comma-separated (folders "
                                          "layout, instead of splits.json).")
    val_classes: list[str] = option([], "Training classes held out for validation, comma-separated; default: "
                                        "--val-fraction of them. Given on the command line, they replace the "
                                        "--config file's val_fraction.")
    val_fraction: float = option(0.2, "Share of the training classes held out (class-disjoint) for validation and "
                                      "best-checkpoint selection; at least 2 classes (0 = no validation). Not with "
                                      "--val-classes; given on the command line, it replaces the --config file's "
                                      "val_classes.")
    image_size: int = option(224, "Training and inference size in pixels (square).")
    # --- schedule ---------------------------------------------------------------------------------------------
    mode: str = option("staged", "staged: train the embedding head on cached backbone features, then optionally "
                                 "fine-tune everything (--finetune-epochs); end_to_end: train everything from the "
                                 "start.")
    epochs: int = option(100, "Epochs of the head stage (staged) or of the whole run (end_to_end).")
    minutes: Optional[float] = option(None, "Time budget of the head stage (staged) or of the run, in minutes (0 or "
                                            "unset: none).")
    head_passes: int = option(1, "Staged: passes over the training set per epoch of the head stage (validation and "
                                 "checkpoints and the method hooks' refresh come once per epoch; raise it when a "
                                 "pass takes milliseconds).")
    feature_views: int = option(2, "Staged: views cached per training image (1: as is, 2: + mirrored, 3: + centre "
                                   "zoom, 4: + mirrored zoom); each step draws one per image.")
    head_init: str = option("pca", "Embedding head start: identity (embeddings start as the frozen features; needs "
                                   "embedding_dim 0), pca (principal axes of the training features: starts from the "
                                   "backbone's own geometry), pca_whiten, class_whiten (whitens the within-class "
                                   "scatter of the training classes, shrunk by --whiten-shrinkage), or random.")
    whiten_shrinkage: float = option(10.0, "head_init class_whiten: shrinkage λ added to the within-class covariance, "
                                           "in units of its mean eigenvalue (small: full whitening, large: "
                                           "centring only).")
    finetune_epochs: int = option(0, "Staged: epochs of the second stage that fine-tunes backbone and head (0 = none).")
    finetune_minutes: Optional[float] = option(None, "Staged: time budget of the fine-tuning stage, in minutes (0 or "
                                                     "unset: none).")
    # --- model ------------------------------------------------------------------------------------------------
    backbone: str = option("tf_efficientnet_lite0", "timm backbone name.")
    weights: Optional[str] = option("imagenet", "Backbone weights: imagenet (offline for tf_efficientnet_lite0/1/2), a "
                                                "local file, or none.", path=True)
    input_mean: list[float] = option([], "Input normalisation mean " + INPUT_NORMALIZATION_HELP + " Give it and "
                                         "--input-std for weights trained with other statistics than the backbone's "
                                         "timm config (e.g. 0.5,0.5,0.5 / 0.5,0.5,0.5).")
    input_std: list[float] = option([], "Input normalisation standard deviation (> 0) " + INPUT_NORMALIZATION_HELP
                                        + " See --input-mean.")
    pooling: str = option("avg", "Global pooling: avg or gem (generalised mean, learnable power p starting at 3; "
                                 "values below 1e-6 count as 1e-6, so of a signed map, e.g. a --pool-stages "
                                 "stage of tf_efficientnet_lite*, only the positive part counts).")
    pool_stages: list[int] = option([], "Backbone stages (indices of its feature_info, negative from the end) whose "
                                        "pooled maps are L2-normalised and concatenated to the final map's (e.g. 3,4 "
                                        "for tf_efficientnet_lite*: strides 16 and 32).")
    flip_average: bool = option(False, "Embed every image as the mean of its features and its mirror's (test-time "
                                       "augmentation: twice the backbone's cost at inference).")
    embedding_dim: int = option(128, "Embedding size; 0 = the backbone's feature size (needed by head_init identity).")
    frozen_stages: int = option(0, "Backbone stages (entries of timm's feature_info, from the input) kept fixed, "
                                   "weights and BatchNorm statistics, when the backbone trains (fine-tuning, "
                                   "end_to_end): no backward pass runs through them (e.g. 3 for "
                                   "tf_efficientnet_lite*: everything up to stride 8).")
    freeze_bn: bool = option(True, "Keep the backbone's BatchNorm statistics and affine parameters fixed.")
    # --- method -----------------------------------------------------------------------------------------------
    loss: str = option("triplet_margin", "Loss (metric/ LOSSES name): triplet_margin, soft_triple, "
                                         "triplet_upper_bound, "
                                         "global, hierarchical_triplet, ...")
    miner: Optional[str] = option(None, "Triplet miner (MINERS name: batch_all, batch_hard, semi_hard) for losses that "
                                        "take one; default: the loss's own (all valid triplets).")
    distance: Optional[str] = option(None, "Distance (DISTANCES name: euclidean, squared_euclidean, cosine, snr) for "
                                           "loss, miner and class mining; default: each component's own.")
    sampler: str = option("pk", "Batch sampler (BATCH_SAMPLERS name): pk, class_representative, hierarchical, "
                                "smart_mining.")
    classes_per_batch: int = option(8, "Classes per batch (P).")
    samples_per_class: int = option(4, "Images of each class per batch (K); smart_mining: P·K/3 triplets per batch.")
    margin: Optional[float] = option(None, "Margin of the loss and of the semi-hard or batch-all miner (triplet 0.1, "
                                           "SoftTriple δ 0.01, upper bound 0.2, global t 0.4 by default).")
    beta: Optional[float] = option(None, "Hierarchical triplet: base margin β (0.1).")
    num_levels: Optional[int] = option(None, "Hierarchical triplet: levels of the class tree (16).")
    centers_per_class: Optional[int] = option(None, "SoftTriple: centres per class K (10).")
    la: Optional[float] = option(None, "SoftTriple: scale λ (20).")
    gamma: Optional[float] = option(None, "SoftTriple: softmax temperature γ (0.1).")
    tau: Optional[float] = option(None, "SoftTriple: centre-merging weight τ (0.2).")
    scale: Optional[float] = option(None, "Triplet upper bound: distance of the fixed centroids from the origin (1).")
    align_centroids: Optional[bool] = option(None, "Triplet upper bound: turn the fixed centroids rigidly to the "
                                                   "training classes' mean embeddings before training (default on; "
                                                   "--no-align-centroids turns it off).")
    lam: Optional[float] = option(None, "Global loss: weight λ of the mean-separation term (0.8).")
    zero_mean_weight: float = option(0.0, "Weight of DSML's zero-mean regulariser |Σ_d h_d| (0 = off).")
    proximity_weight: float = option(0.1, "class_representative sampler: weight of the proximity-to-representative "
                                          "regulariser.")
    iterations_per_representative: Optional[int] = option(None, "class_representative: batches that keep the same "
                                                                "representatives (T, 10).")
    classes_per_anchor: Optional[int] = option(None, "hierarchical sampler: classes drawn with each anchor class from "
                                                     "the tree (2).")
    class_tree: Optional[str] = option(None, "hierarchical sampler: the class tree neighbouring classes come from: "
                                             "embeddings (default: the class centres' average-linkage tree, rebuilt "
                                             "every epoch; with loss hierarchical_triplet the loss's own) or "
                                             "super_classes (the data set's, e.g. SOP's: the classes of the anchor's "
                                             "super-class, nearest centre first).")
    num_neighbours: Optional[int] = option(None, "smart_mining: neighbours searched per anchor in the graph index "
                                                 "(32).")
    target_active: float = option(0.5, "smart_mining: share of active triplets the adaptive controller aims at.")
    controller_gain: float = option(0.05, "smart_mining: controller step per unit of share error (distance units).")
    # --- optimisation -----------------------------------------------------------------------------------------
    lr: float = option(1e-3, "Learning rate of the embedding head (AdamW).")
    backbone_lr: float = option(1e-5, "Learning rate of backbone and pooling (end_to_end and fine-tuning).")
    loss_lr: float = option(1e-2, "Learning rate of a loss's own parameters (SoftTriple centres).")
    weight_decay: float = option(1e-4, "AdamW weight decay.")
    lr_schedule: str = option("cosine", "Learning-rate schedule after warm-up: cosine or constant.")
    batch_size: int = option(32, "Images per forward pass when caching features, embedding and validating.")
    # --- run --------------------------------------------------------------------------------------------------
    seed: int = option(0, "Random seed (runs on CPU are deterministic for a seed).")
    device: str = option("auto", "auto, cpu, cuda or cuda:N.")
    amp: bool = option(True, "Mixed precision on CUDA.")
    workers: int = option(0, "DataLoader worker processes. The smart_mining sampler's training batches are read "
                             "without them, each mined after the step before it (as the controller left it), so "
                             "that the run does not depend on them.")
    threads: Optional[int] = option(None, "CPU threads of torch (default: torch's choice). The head stage's steps are "
                                          "tiny: 1 thread is often fastest, and much faster on a shared machine.")
    cache_dir: Optional[str] = option(None, "Folder for decoded images and cached backbone features, reused across "
                                            "runs (default: in memory only).", path=True)
    quiet: bool = option(False, "No progress bars.")

    REPLACED_BY: ClassVar[dict[str, tuple[str, ...]]] = {"val_classes": ("val_fraction",),
                                                         "val_fraction": ("val_classes",)}
    """A command-line option → the config file's options it replaces: they choose the validation classes another way
    (:func:`coseg.engine.load_config`)."""

    def __post_init__(self) -> None:
        check_input_normalization(self)

    def changed(self, *names: str) -> list[str]:
        """Those of the fields ``names`` set to another value than their default."""
        default = {f.name: f.default for f in fields(self)}
        return [name for name in names if getattr(self, name) != default[name]]
