import pytest
import segmentation_models_pytorch as smp
import torch

from coseg.objective import SEGMENTATION_LOSSES, CosegObjective
from metric.losses import ISTripletLoss
from tests.helpers import assert_close


def batch():
    torch.manual_seed(0)
    logits = torch.randn(4, 1, 16, 16, requires_grad=True)
    emb = torch.nn.functional.normalize(torch.randn(4, 8, 16, 16), dim=1).requires_grad_(True)
    masks = (torch.rand(4, 16, 16) > 0.5).long()
    return logits, emb, masks, torch.tensor([0, 0, 1, 1])


def test_weighted_sum_of_terms_matches_smp_losses():
    logits, emb, masks, groups = batch()
    obj = CosegObjective({"dice": 1.0, "ce": 0.5, "focal": 2.0, "jaccard": 0.0})
    terms = obj(logits, None, masks, groups)
    target = masks.unsqueeze(1).float()
    dice = smp.losses.DiceLoss("binary")(logits, target)
    ce = smp.losses.SoftBCEWithLogitsLoss()(logits, target)
    focal = smp.losses.FocalLoss("binary")(logits, target)
    assert set(terms) == {"dice", "ce", "focal", "loss"}  # zero weight: not computed
    assert_close(terms["loss"], dice + 0.5 * ce + 2.0 * focal)


def test_triplet_term_is_added_and_differentiable():
    logits, emb, masks, groups = batch()
    torch.manual_seed(1)
    obj = CosegObjective({"dice": 1.0}, triplet_weight=0.5, triplet=ISTripletLoss(k_per_class=8, strategy="random"))
    terms = obj(logits, emb, masks, groups)
    assert_close(terms["loss"], terms["dice"] + 0.5 * terms["triplet"])
    assert terms["triplet"] > 0
    terms["loss"].backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_bad_configuration_and_shapes():
    with pytest.raises(ValueError, match="no term"):
        CosegObjective({"dice": 0.0})
    with pytest.raises(ValueError, match="ISTripletLoss"):
        CosegObjective({"dice": 1.0}, triplet_weight=1.0)
    with pytest.raises(ValueError, match="loss weights must be >= 0, got dice -1.0, triplet -0.5"):
        CosegObjective({"dice": -1.0, "ce": 1.0}, triplet_weight=-0.5)
    with pytest.raises(KeyError, match="valid names: ce, dice, focal, jaccard"):
        CosegObjective({"lovasz": 1.0})
    logits, emb, masks, groups = batch()
    with pytest.raises(ValueError, match="masks must have shape"):
        CosegObjective({"dice": 1.0})(logits, None, masks[:, :8], groups)
    assert SEGMENTATION_LOSSES.names() == ["ce", "dice", "focal", "jaccard"]


def test_pool_labels_marks_mixed_cells_ignored():
    from coseg.objective import IGNORE, pool_labels

    masks = torch.zeros(1, 8, 8, dtype=torch.long)
    masks[0, :4, :] = 1
    masks[0, 4, 0] = 1  # makes the cell (rows 4-7, cols 0-3) mixed
    labels = pool_labels(masks, (2, 2))
    assert labels.tolist() == [[[1, 1], [IGNORE, 0]]]
    assert torch.equal(pool_labels(masks, (8, 8)), masks)


def test_triplet_on_coarser_embeddings():
    logits, _, masks, groups = batch()
    emb = torch.nn.functional.normalize(torch.randn(4, 8, 4, 4), dim=1).requires_grad_(True)
    obj = CosegObjective({"dice": 1.0}, triplet_weight=1.0, triplet=ISTripletLoss(k_per_class=4, strategy="hard"))
    masks = torch.zeros_like(masks)
    masks[:, :8] = 1  # top half foreground: every 4×4 cell is pure
    terms = obj(logits, emb, masks, groups)
    terms["loss"].backward()
    assert terms["triplet"] >= 0 and emb.grad is not None


@pytest.mark.parametrize("miner", ["batch_hard", "semi_hard", "batch_all"])
def test_config_chooses_the_pixel_triplet_miner(miner):
    from coseg.config import CosegTrainConfig
    from coseg.train import build_objective
    from metric.miners import BatchAllMiner, BatchHardMiner, SemiHardMiner

    obj = build_objective(CosegTrainConfig(triplet_miner=miner, triplet_pixels=8, triplet_margin=0.4))
    expected = {"batch_hard": BatchHardMiner, "semi_hard": SemiHardMiner, "batch_all": BatchAllMiner}[miner]
    assert type(obj.triplet.miner) is expected
    if miner != "batch_hard":
        assert obj.triplet.miner.margin == 0.4
    logits, emb, masks, groups = batch()
    terms = obj(logits, emb, masks, groups)
    terms["loss"].backward()
    assert terms["triplet"] > 0 and emb.grad.abs().sum() > 0


def test_unknown_pixel_triplet_miner_lists_the_valid_ones():
    from coseg.config import CosegTrainConfig
    from coseg.train import build_objective

    with pytest.raises(KeyError, match="semi_hard"):
        build_objective(CosegTrainConfig(triplet_miner="hardest"))
