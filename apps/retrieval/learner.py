"""What the training engine trains and checkpoints for retrieval: the model, the loss, regularisers and hooks."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from apps.retrieval.components import Parts
from apps.retrieval.hooks import Embed
from apps.retrieval.model import RetrievalModel
from coseg.data import printable
from coseg.engine.distributed import DistInfo, all_gather_rows, row_counts
from coseg.models.checkpoint import read_checkpoint, write_checkpoint
from metric.miners import TripletIndices

LOSS_STATE_KIND = "retrieval loss state"  # recorded in loss-state files: a model loader given one refuses it


def loss_state_path(model_file: Path) -> Path:
    """The file of the loss's state that :meth:`RetrievalLearner.save` writes beside the model file
    ``model_file``: ``best.safetensors`` → ``best.loss.safetensors``."""
    return model_file.with_suffix(".loss.safetensors")


class RetrievalLearner(nn.Module):
    """The retrieval model ``net`` with its objective. The loss, the regularisers and the hooks are submodules, so
    a loss's parameters (SoftTriple's centres) and a hook's buffers (the smart-mining controller's offset) are in
    the training checkpoint and resume with the model; :meth:`save` writes the model file of ``net`` alone, and the
    loss's state in a file of its own beside it, from which :meth:`load` restores both.

    ``forward(inputs)``: embeddings (B, D) of images (B, 3, S, S) float in [0, 1], or, when :attr:`head_only`, of
    cached backbone features (B, feature_dim) — the head stage."""

    def __init__(self, net: RetrievalModel, parts: Parts, loss_name: str) -> None:
        super().__init__()
        self.net = net
        self.loss = parts.loss
        self.regularizers = nn.ModuleDict(parts.regularizers)
        self.hooks = nn.ModuleList(parts.hooks)
        self.loss_name = loss_name
        self.head_only = False

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net.embed_features(inputs) if self.head_only else self.net(inputs)

    def objective(self, embeddings: torch.Tensor, labels: torch.Tensor,
                  dist: DistInfo = DistInfo()) -> dict[str, torch.Tensor]:
        """Loss terms of a batch's embeddings (n, D) and labels (n,): ``loss`` (optimised) = the loss (on the
        hooks' triplets if one gives them) + regularisers + the hooks' extra losses; the parts and the hooks'
        feedback values are returned beside it, for the log.

        Under DDP (``dist``) each process passes its share of the batch, and every process computes the same
        objective, of the whole batch: the shares (and the hooks' triplets) all-gathered in rank order, so that the
        averaged gradients are those of one process on the whole batch (``all_gather_rows``)."""
        counts = row_counts(len(labels), dist)

        def gather(values: torch.Tensor) -> torch.Tensor:
            return all_gather_rows(values, dist, counts)

        triplets: Optional[TripletIndices] = None
        for hook in self.hooks:
            if triplets is None:
                triplets = hook.batch_triplets(len(labels))
        embeddings, labels = gather(embeddings.float()), gather(labels)
        if triplets is None:
            main = self.loss(embeddings, labels)
        else:
            positions = torch.stack([triplets.anchor, triplets.positive, triplets.negative], 1).to(embeddings.device)
            positions = positions + sum(counts[: dist.rank])  # (T, 3) in this process's share → in the whole batch
            triplets = TripletIndices(*all_gather_rows(positions, dist).unbind(1))
            main = self.loss(embeddings, labels, triplets)
        parts = {self.loss_name: main}
        parts.update({name: module(embeddings, labels) for name, module in self.regularizers.items()})
        for hook in self.hooks:
            parts.update(hook.extra_losses(embeddings, labels, gather))
        terms = {"loss": torch.stack(list(parts.values())).sum(), **(parts if len(parts) > 1 else {})}
        for hook in self.hooks:
            terms.update(hook.after_step(embeddings, labels, triplets))
        return terms

    def before_epoch(self, embed: Embed, labels: torch.Tensor) -> None:
        """Let every hook refresh from the whole training set's embeddings (see ``apps.retrieval.hooks``)."""
        for hook in self.hooks:
            hook.before_epoch(embed, labels)

    def save(self, path: Path, metadata: Optional[dict[str, str]] = None) -> None:
        """Write the model file of ``net`` to ``path`` (what evaluation and export read: no loss tensor in it) and,
        first, when the loss has a state of its own (SoftTriple's centres), its parameters and buffers to
        :func:`loss_state_path` with the same ``metadata`` (the engine's: epoch and validation scores), so that a
        later stage can go on from that epoch's model and loss together (:meth:`load`)."""
        state = self.loss.state_dict()
        if state:
            write_checkpoint(loss_state_path(path), state, {"loss": self.loss_name}, metadata, kind=LOSS_STATE_KIND)
        self.net.save(path, metadata)

    def load(self, path: Path) -> None:
        """Load the model file ``path`` into ``net`` and, when the loss has a state of its own, the one :meth:`save`
        wrote beside it into the loss. Without that file (a run of an older version), or with one saved beside
        another model file (a run killed between the two writes), the loss keeps its current state, with a
        warning."""
        state, _, metadata = read_checkpoint(path, "cpu")
        self.net.load_state_dict(state)
        if not self.loss.state_dict():
            return
        loss_file = loss_state_path(path)
        if not loss_file.is_file():
            problem = f"{printable(loss_file)} not found"
        else:
            loss_state, _, loss_metadata = read_checkpoint(loss_file, "cpu", kind=LOSS_STATE_KIND)
            if loss_metadata == metadata:
                self.loss.load_state_dict(loss_state)
                return
            problem = (f"{printable(loss_file)} was saved with another model (epoch {loss_metadata.get('epoch')}, "
                       f"not {metadata.get('epoch')})")
        warnings.warn(f"{problem}: the loss's state (e.g. SoftTriple's centres) goes on as it is, not as it was "
                      f"when {printable(path)} was saved", stacklevel=2)
