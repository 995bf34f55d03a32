import math

import pytest
import segmentation_models_pytorch as smp
import torch

from coseg.objective import SEGMENTATION_LOSSES, CosegObjective
from metric import NonFiniteError
from metric.losses import ISTripletLoss
from tests.helpers import assert_close, gradcheck


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
    with pytest.raises(ValueError, match="loss weights must be finite and >= 0, got dice -1.0, triplet -0.5"):
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


def test_gradcheck_of_every_term_in_float64():
    """float64 logits and embeddings are not rounded to float32 on the way, so the whole objective passes gradcheck."""
    torch.manual_seed(0)
    logits, emb = torch.randn(2, 1, 6, 6), torch.randn(2, 3, 6, 6)
    masks = torch.zeros(2, 6, 6, dtype=torch.long)
    masks[:, 1:4, 2:5] = 1
    obj = CosegObjective({"dice": 1.0, "ce": 0.5, "focal": 2.0, "jaccard": 1.0}, triplet_weight=0.7,
                         triplet=ISTripletLoss(margin=0.5, k_per_class=6, strategy="random"))

    def terms(x, e):
        torch.manual_seed(5)  # the same pixels are sampled at every evaluation
        return obj(x, e, masks, torch.tensor([0, 0]))

    first = terms(logits.double(), emb.double())
    assert first["loss"].dtype == torch.float64 and first["triplet"] > 0
    assert gradcheck(lambda x, e: terms(x, e)["loss"], [logits, emb])


def looped_segmentation_terms(logits: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Dice, BCE, focal (γ = 2) and Jaccard of (B, 1, H, W) logits and (B, H, W) 0/1 masks, pixel by pixel: Dice and
    Jaccard over the whole batch (0 when it has no foreground), BCE and focal averaged over its pixels."""
    inter = predicted = true = bce = focal = 0.0
    for z, t in zip(logits.flatten().tolist(), masks.flatten().tolist()):
        p = 1 / (1 + math.exp(-z))
        inter, predicted, true = inter + p * t, predicted + p, true + t
        nll = -math.log(p if t else 1 - p)
        bce, focal = bce + nll, focal + (1 - (p if t else 1 - p)) ** 2 * nll
    n = masks.numel()
    return {"dice": 1 - 2 * inter / (predicted + true) if true else 0.0, "ce": bce / n, "focal": focal / n,
            "jaccard": 1 - inter / (predicted + true - inter) if true else 0.0}


@pytest.mark.parametrize("fill", ["random", "empty", "all_foreground", "one_empty"])
def test_segmentation_terms_match_loops(fill):
    torch.manual_seed(2)
    masks = (torch.rand(3, 5, 5) > 0.5).long()
    masks = {"random": masks, "empty": masks * 0, "all_foreground": masks * 0 + 1,
             "one_empty": torch.cat([masks[:1] * 0, masks[1:]])}[fill]
    logits = torch.randn(3, 1, 5, 5, dtype=torch.float64)
    terms = CosegObjective({"dice": 1.0, "ce": 1.0, "focal": 1.0, "jaccard": 1.0})(logits, None, masks)
    expected = looped_segmentation_terms(logits, masks)
    for name, value in expected.items():
        assert_close(terms[name], value, msg=name)
    assert_close(terms["loss"], sum(expected.values()))


def test_an_unreduced_triplet_loss_is_refused():
    """reduction='none' gives one loss per triplet: the weighted sum would be a vector, not the loss to minimise."""
    with pytest.raises(ValueError, match="reduction 'none' would make the objective a vector"):
        CosegObjective({"dice": 1.0}, triplet_weight=0.5, triplet=ISTripletLoss(k_per_class=8, reduction="none"))
    logits, emb, masks, groups = batch()
    for reduction in ("mean", "mean_nonzero", "sum"):
        torch.manual_seed(1)
        obj = CosegObjective({"dice": 1.0}, triplet_weight=0.5,
                             triplet=ISTripletLoss(k_per_class=8, strategy="random", reduction=reduction))
        assert obj(logits, emb, masks, groups)["loss"].shape == ()


@pytest.mark.parametrize("weights, triplet_weight, words", [({"dice": math.nan}, 0.0, "dice nan"),
                                                             ({"dice": 1.0, "ce": math.inf}, 0.0, "ce inf"),
                                                             ({"dice": 1.0}, math.nan, "triplet nan")])
def test_weights_that_are_not_finite_are_refused(weights, triplet_weight, words):
    with pytest.raises(ValueError, match=f"loss weights must be finite and >= 0, got {words}"):
        CosegObjective(weights, triplet_weight, ISTripletLoss())


def test_non_finite_logits_are_named_as_mask_logits_when_the_triplet_term_samples_from_them():
    logits, emb, masks, groups = batch()
    logits = logits.detach().clone()
    logits[0, 0, 0, 0] = math.nan
    obj = CosegObjective({"dice": 1.0}, triplet_weight=0.5, triplet=ISTripletLoss(k_per_class=8))
    with pytest.raises(NonFiniteError, match=r"^mask_logits holds 1 NaN/Inf value\(s\)$"):
        obj(logits, emb, masks, groups)
