"""An ensemble of co-segmentation models: their foreground probabilities averaged.

Models trained with different seeds make different mistakes, and on iCoseg one setting's runs differ by several J
(docs/icoseg_experiments.md), so averaging a few short runs' probabilities is steadier than one long run."""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Union

import torch
from torch import nn

from coseg.models.checkpoint import (TRAINED_ON, VALIDATED_ON, PathLike, names_record, recorded_names,
                                     write_checkpoint)
from coseg.models.cosegnet import MODEL_KIND, ChunkKeys, CosegNet, StreamedContext
from coseg.models.edge_filter import EdgeFilter
from coseg.models.group_statistics import GroupStatistics
from coseg.models.refinement import GroupRefinement


class CosegEnsemble(nn.Module):
    """Members' foreground probabilities averaged, then (optionally) edge-filtered; the same ``predict`` and
    ``predict_group`` as :class:`CosegNet`. Each member runs its own group consensus, refinement, flip and group
    statistics. An ensemble given as a member gives its members (each model counts once in the mean, and the
    ensemble is saved as one model file: :meth:`save`; :func:`~coseg.models.load_model` reads it back)."""

    def __init__(self, members: Sequence[Union[CosegNet, "CosegEnsemble"]]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        models = [m for member in members for m in single_models(member)]
        other = next((m for m in models if not isinstance(m, CosegNet)), None)
        if other is not None:
            raise TypeError(f"ensemble members must be co-segmentation models (CosegNet or CosegEnsemble), got "
                            f"{type(other).__name__}")
        self.members = nn.ModuleList(models)
        self.config = {"members": [dict(m.config) for m in models]}

    @property
    def output_stride(self) -> int:
        """Input sides must be multiples of this (every member's stride is a power of two: the largest)."""
        return max(m.output_stride for m in self.members)

    @property
    def max_references(self) -> int:
        """How many images of its group each image is compared with (:attr:`CosegNet.max_references`), the
        largest of the members'; setting it sets every member's."""
        return max(m.max_references for m in self.members)

    @max_references.setter
    def max_references(self, limit: int) -> None:
        for member in self.members:
            member.max_references = limit

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, groups: Optional[torch.Tensor] = None, flip: bool = False,
                edges: Optional[EdgeFilter] = None) -> torch.Tensor:
        """(B, 1, H, W) mean of the members' :meth:`CosegNet.predict` probabilities, then ``edges``."""
        return _mean_filtered([m.predict(images, groups, flip=flip) for m in self.members], images, edges)

    @torch.inference_mode()
    def predict_group(self, images: torch.Tensor, chunk_size: int = 16, refinement: Optional[GroupRefinement] = None,
                      flip: bool = False, edges: Optional[EdgeFilter] = None,
                      statistics: Optional[GroupStatistics] = None) -> torch.Tensor:
        """(N, 1, H, W) mean of the members' :meth:`CosegNet.predict_group` probabilities for the N images of one
        group, then ``edges``."""
        return _mean_filtered([m.predict_group(images, chunk_size, refinement, flip=flip, statistics=statistics)
                               for m in self.members], images, edges)

    def group_context(self, chunks: Iterable[torch.Tensor], flip: bool = False) -> list[Optional[StreamedContext]]:
        """Every member's :meth:`CosegNet.group_context`, from one pass over the group's chunks."""
        keys: list[list[Optional[ChunkKeys]]] = [[] for _ in self.members]
        for chunk in chunks:
            for member, taken in zip(self.members, keys):
                taken.append(member.chunk_keys(chunk, flip))
        return [member.context_of(taken) for member, taken in zip(self.members, keys)]

    @torch.inference_mode()
    def predict_chunk(self, chunk: torch.Tensor, context: Sequence[Optional[StreamedContext]], rows: Sequence[int],
                      flip: bool = False, edges: Optional[EdgeFilter] = None) -> torch.Tensor:
        """(B, 1, H, W) mean of the members' :meth:`CosegNet.predict_chunk` probabilities (``context``: from
        :meth:`group_context`), then ``edges``."""
        if len(context) != len(self.members):
            raise ValueError(f"a context per member is needed: {len(context)} for {len(self.members)} members")
        return _mean_filtered([m.predict_chunk(chunk, c, rows, flip=flip) for m, c in zip(self.members, context)],
                              chunk, edges)

    def save(self, path: PathLike, metadata: Optional[dict[str, str]] = None) -> None:
        """Write every member's weights and config to the safetensors file ``path`` (atomically)."""
        write_checkpoint(path, self.state_dict(), self.config, metadata, kind=MODEL_KIND)


def single_models(model: Union[CosegNet, CosegEnsemble]) -> list[CosegNet]:
    """The single models ``model`` averages: an ensemble's members, or ``model`` itself."""
    return list(model.members) if isinstance(model, CosegEnsemble) else [model]  # type: ignore[arg-type]


def seen_by_members(paths: Sequence[PathLike]) -> dict[str, str]:
    """The metadata recording the union of the groups the model files ``paths`` were trained on, and of those they
    were validated on; each left out when a file does not record its names (they are not known)."""
    joined: dict[str, str] = {}
    for key in (TRAINED_ON, VALIDATED_ON):
        records = [recorded_names(p, key) for p in paths]
        if all(r is not None for r in records):
            joined[key] = names_record(name for r in records for name in r)  # type: ignore[union-attr]
    return joined


def _mean_filtered(probs: list[torch.Tensor], images: torch.Tensor, edges: Optional[EdgeFilter]) -> torch.Tensor:
    """The members' probabilities averaged, then guided-filtered by ``images`` once (not once per member)."""
    mean = torch.stack(probs).mean(0)
    return mean if edges is None else edges(mean, images)
