"""Reading model files: one :class:`CosegNet`, or a :class:`CosegEnsemble` of several; ensembles of model files."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch

from coseg.models.checkpoint import PathLike, checkpoint_metadata, load_model_file
from coseg.models.cosegnet import CosegNet, create_model
from coseg.models.ensemble import CosegEnsemble

Model = Union[CosegNet, CosegEnsemble]


def _build(members: Optional[Sequence[dict[str, Any]]] = None, weights: Optional[PathLike] = None,
           **config: Any) -> Model:
    """The model a file's config describes: an ensemble when it lists ``members``, else one CosegNet."""
    if members is None:
        return create_model(**config, weights=weights)
    if config:
        raise TypeError(f"an ensemble config holds only 'members', not {sorted(config)}")
    return CosegEnsemble([create_model(**member, weights=weights) for member in members])


def load_model(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Model:
    """Rebuild the model saved by :meth:`CosegNet.save` or :meth:`CosegEnsemble.save` in ``path`` (no download:
    weights=None, then its state dict), on ``map_location``. Raises ``ValueError`` naming the file if it is not
    such a model file."""
    return load_model_file(path, _build, map_location)


def load_ensemble(paths: Sequence[PathLike], map_location: Union[str, torch.device] = "cpu"
                  ) -> tuple[CosegEnsemble, Optional[int]]:
    """The ensemble of the models in ``paths`` (an ensemble file contributes its members) and the image size they
    were trained at (None if their files do not record it). Raises ``ValueError`` if the sizes differ."""
    if not paths:
        raise ValueError("no model file to join")
    sizes = {str(p): checkpoint_metadata(p).get("image_size") for p in paths}
    if len(set(sizes.values())) > 1:
        raise ValueError("the models were trained at different image sizes: "
                         + ", ".join(f"{p}: {s or 'not recorded'}" for p, s in sizes.items()))
    members: list[CosegNet] = []
    for path in paths:
        model = load_model(path, map_location)
        members.extend(model.members if isinstance(model, CosegEnsemble) else [model])  # type: ignore[arg-type]
    size = next(iter(sizes.values()))
    return CosegEnsemble(members), None if size is None else int(size)
