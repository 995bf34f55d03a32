"""Reading model files: one :class:`CosegNet`, or a :class:`CosegEnsemble` of several; ensembles of model files."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from coseg.data.io import printable
from coseg.models.checkpoint import (BOOLEAN, NAME, Field, PathLike, check_config, integer, load_model_file, numbers,
                                     recorded_image_size)
from coseg.models.cosegnet import MODEL_KIND, CosegNet, create_model
from coseg.models.ensemble import CosegEnsemble, single_models

Model = Union[CosegNet, CosegEnsemble]

# The fields of a CosegNet's saved config (:func:`create_model`'s arguments but ``weights``): what each must hold.
COSEGNET_FIELDS: dict[str, Field] = {
    "arch": NAME, "encoder": NAME, "embedding_dim": integer(1), "embedding_hidden_channels": integer(1),
    "embedding_stride": integer(1), "group_levels": integer(0), "semantic_prior": BOOLEAN, "frozen_prior": BOOLEAN,
    "mean": numbers(3), "std": numbers(3, positive=True),
}


def _build(members: Optional[Sequence[dict[str, Any]]] = None, weights: Optional[PathLike] = None,
           **config: Any) -> Model:
    """The model a file's config describes: an ensemble when it lists ``members``, else one CosegNet. Every field
    is checked first (:data:`COSEGNET_FIELDS`): ``ValueError`` names the first that is wrong."""
    if members is None:
        check_config(config, COSEGNET_FIELDS)
        return create_model(**config, weights=weights)
    if config:
        raise TypeError(f"an ensemble config holds only 'members', not {sorted(config)}")
    if not isinstance(members, list) or not members or not all(isinstance(m, dict) for m in members):
        raise ValueError("model config field 'members' must be a non-empty list of model configs (JSON objects)")
    for i, member in enumerate(members):
        check_config(member, COSEGNET_FIELDS, f"members[{i}].")
    return CosegEnsemble([create_model(**member, weights=weights) for member in members])


def load_model(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Model:
    """Rebuild the model saved by :meth:`CosegNet.save` or :meth:`CosegEnsemble.save` in ``path`` (no download:
    weights=None, then its state dict), on ``map_location``. Raises ``ValueError`` naming the file if it is not
    such a model file."""
    return load_model_file(path, _build, MODEL_KIND, map_location, upgrade=_flat_members)


def _flat_members(state_dict: dict[str, torch.Tensor], config: dict[str, Any]
                  ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An ensemble file holding an ensemble as a member (``coseg ensemble`` wrote them before 2026-12-06) as one
    listing each single model once, in the same order: its config's members and its weights' ``members.<i>.``
    prefixes renumbered. Other files are returned as they are."""
    members = config.get("members")
    if not isinstance(members, list) or not any(isinstance(m, dict) and "members" in m for m in members):
        return state_dict, config  # a 'members' that is not a list is refused, naming the file, by the builder
    singles: list[Any] = []
    prefixes: dict[str, str] = {}  # an old key prefix of a single model → its new one

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and isinstance(node.get("members"), list):
            for i, member in enumerate(node["members"]):
                walk(member, f"{prefix}members.{i}.")
        else:
            prefixes[prefix] = f"members.{len(singles)}."
            singles.append(node)

    walk(config, "")
    renamed = {}
    for key, value in state_dict.items():
        old = next((p for p in prefixes if key.startswith(p)), None)  # one at most: prefixes end with a dot
        renamed[key if old is None else prefixes[old] + key[len(old):]] = value  # a stray key is refused later
    return renamed, {**config, "members": singles}


def load_ensemble(paths: Sequence[PathLike], map_location: Union[str, torch.device] = "cpu"
                  ) -> tuple[CosegEnsemble, Optional[int]]:
    """The ensemble of the models in ``paths`` (an ensemble file contributes its members) and the image size they
    were trained at (None if their files do not record it). Raises ``ValueError`` if the sizes differ, or if a file
    is given twice, or two files hold the same model (the same config and weights: a copy, or a member of an
    ensemble file given with it), whose probabilities would count twice in the mean."""
    if not paths:
        raise ValueError("no model file to join")
    seen: dict[Path, PathLike] = {}
    for path in paths:
        first = seen.get(Path(path).resolve())
        if first is None:
            seen[Path(path).resolve()] = path
        else:
            same = "" if str(first) == str(path) else f" (as {printable(first)})"
            raise ValueError(f"{printable(path)} is given twice{same}: its probabilities would count twice in the "
                             "ensemble's mean")
    sizes = {printable(p): recorded_image_size(p) for p in paths}
    if len(set(sizes.values())) > 1:
        raise ValueError("the models were trained at different image sizes: "
                         + ", ".join(f"{p}: {s or 'not recorded'}" for p, s in sizes.items()))
    models = [load_model(path, map_location) for path in paths]
    held = [(k, member) for k, model in enumerate(models) for member in single_models(model)]
    for i, (k, member) in enumerate(held):
        other = next((j for j, earlier in held[:i] if j != k and _same_model(earlier, member)), None)
        if other is not None:
            raise ValueError(f"{printable(paths[k])} holds a model that {printable(paths[other])} holds too (the same "
                             "config and weights): its probabilities would count twice in the ensemble's mean")
    return CosegEnsemble(models), next(iter(sizes.values()))


def _same_model(a: CosegNet, b: CosegNet) -> bool:
    """Whether ``a`` and ``b`` have the same config and the same weights and statistics, value for value."""
    first, second = a.state_dict(), b.state_dict()
    return a.config == b.config and first.keys() == second.keys() and all(
        torch.equal(value, second[key]) for key, value in first.items())
