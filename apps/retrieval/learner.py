"""What the training engine trains and checkpoints for retrieval: the model, the loss, regularisers and hooks."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from apps.retrieval.components import Parts
from apps.retrieval.hooks import Embed
from apps.retrieval.model import RetrievalModel
from metric.miners import TripletIndices


class RetrievalLearner(nn.Module):
    """The retrieval model ``net`` with its objective. The loss, the regularisers and the hooks are submodules, so
    a loss's parameters (SoftTriple's centres) and a hook's buffers (the smart-mining controller's offset) are in
    the training checkpoint and resume with the model; :meth:`save` writes the model file of ``net`` alone.

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

    def objective(self, embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms of a batch's embeddings (N, D) and labels (N,): ``loss`` (optimised) = the loss (on the
        hooks' triplets if one gives them) + regularisers + the hooks' extra losses; the parts and the hooks'
        feedback values are returned beside it, for the log."""
        embeddings = embeddings.float()
        triplets: Optional[TripletIndices] = None
        for hook in self.hooks:
            if triplets is None:
                triplets = hook.batch_triplets(len(labels))
        if triplets is None:
            main = self.loss(embeddings, labels)
        else:
            triplets = TripletIndices(*(t.to(embeddings.device) for t in triplets))
            main = self.loss(embeddings, labels, triplets)
        parts = {self.loss_name: main}
        parts.update({name: module(embeddings, labels) for name, module in self.regularizers.items()})
        for hook in self.hooks:
            parts.update(hook.extra_losses(embeddings, labels))
        terms = {"loss": torch.stack(list(parts.values())).sum(), **(parts if len(parts) > 1 else {})}
        for hook in self.hooks:
            terms.update(hook.after_step(embeddings, labels, triplets))
        return terms

    def before_epoch(self, embed: Embed, labels: torch.Tensor) -> None:
        """Let every hook refresh from the whole training set's embeddings (see ``apps.retrieval.hooks``)."""
        for hook in self.hooks:
            hook.before_epoch(embed, labels)

    def save(self, path: Path, metadata: Optional[dict[str, str]] = None) -> None:
        self.net.save(path, metadata)
