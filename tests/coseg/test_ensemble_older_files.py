"""Ensemble files written before 2026-12-06 could hold an ensemble as a member (its config a member with its own
``members``, its weights under ``members.<i>.members.<j>.``): they load as one ensemble listing each single model
once, in order (they were refused: "unknown field 'members[1].members'")."""
from __future__ import annotations

import pytest
import torch

from coseg.models import CosegEnsemble, load_ensemble, load_model
from coseg.models.checkpoint import write_checkpoint
from coseg.models.cosegnet import MODEL_KIND
from tests.coseg.test_audit_models import TOLERANCE, group_model
from tests.helpers import assert_close


def older_file(path, tree) -> None:
    """Write ``tree`` (a CosegNet, or a list of trees: an ensemble) as the older version's ``save`` did: nested."""
    def config(node):
        return {"members": [config(n) for n in node]} if isinstance(node, list) else dict(node.config)

    def weights(node, prefix):
        if not isinstance(node, list):
            return {prefix + k: v for k, v in node.state_dict().items()}
        return {k: v for i, n in enumerate(node) for k, v in weights(n, f"{prefix}members.{i}.").items()}

    write_checkpoint(path, weights(tree, ""), config(tree), {"image_size": "64"}, kind=MODEL_KIND)


@pytest.fixture(scope="module")
def models():
    return [group_model(seed) for seed in range(4)]


def test_a_nested_ensemble_file_loads_each_model_once_in_order(tmp_path, models):
    a, b, c, d = models
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    older_file(tmp_path / "old.safetensors", [a, [b, [c, d]]])
    loaded = load_model(tmp_path / "old.safetensors").eval()
    assert isinstance(loaded, CosegEnsemble) and len(loaded.members) == 4
    for single, original in zip(loaded.members, models):
        assert all(torch.equal(single.state_dict()[k], v) for k, v in original.state_dict().items())
    expected = torch.stack([m.predict_group(x) for m in models]).mean(0)
    assert_close(loaded.predict_group(x), expected, **TOLERANCE)
    joined, size = load_ensemble([tmp_path / "old.safetensors"])
    assert len(joined.members) == 4 and size == 64


def test_a_flat_file_is_read_as_before_and_a_stray_weight_is_still_refused(tmp_path, models):
    a, b = models[:2]
    older_file(tmp_path / "flat.safetensors", [a, b])
    assert len(load_model(tmp_path / "flat.safetensors").members) == 2
    weights = {f"members.0.{k}": v for k, v in a.state_dict().items()}
    weights |= {f"members.1.members.0.{k}": v for k, v in b.state_dict().items()}
    weights["members.1.extra"] = torch.zeros(1)  # belongs to no single model
    config = {"members": [dict(a.config), {"members": [dict(b.config)]}]}
    write_checkpoint(tmp_path / "stray.safetensors", weights, config, kind=MODEL_KIND)
    with pytest.raises(ValueError, match=r"(?s)stray\.safetensors: its weights do not fit .*members\.1\.extra"):
        load_model(tmp_path / "stray.safetensors")
