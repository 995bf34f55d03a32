"""The co-segmentation objective against naive references: values and gradients of the weighted Dice + BCE terms,
the IS-Triplet term's wiring (labels pooled to the embedding grid, its ignore index), zero weights, awkward masks
and bfloat16 autocast."""
import math

import pytest
import torch
import torch.nn.functional as F

from coseg.objective import CosegObjective
from metric.losses import ISTripletLoss
from tests.helpers import assert_close


def naive_dice_bce(logits: torch.Tensor, masks: torch.Tensor, w_dice: float, w_ce: float) -> torch.Tensor:
    """w_dice · (1 − Dice over the whole batch, 0 without foreground) + w_ce · torch's mean BCE; sums in a loop."""
    inter = predicted = true = 0.0
    for z, t in zip(logits.flatten(), masks.flatten().tolist()):
        p = torch.sigmoid(z)
        inter, predicted, true = inter + p * t, predicted + p, true + t
    dice = 1 - 2 * inter / (predicted + true) if true else logits.sum() * 0
    ce = F.binary_cross_entropy_with_logits(logits, masks.unsqueeze(1).to(logits.dtype))
    return w_dice * dice + w_ce * ce


def masks_of(fill: str, shape: tuple[int, ...]) -> torch.Tensor:
    masks = (torch.rand(shape, generator=torch.Generator().manual_seed(3)) > 0.5).long()
    return {"random": masks, "empty": masks * 0, "all_foreground": masks * 0 + 1}[fill]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("fill", ["random", "empty", "all_foreground"])
def test_value_and_gradient_match_a_looped_dice_and_torchs_bce(fill, batch):
    logits = torch.randn(batch, 1, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    masks = masks_of(fill, (batch, 5, 5))
    ours = logits.clone().requires_grad_(True)
    naive = logits.clone().requires_grad_(True)
    loss = CosegObjective({"dice": 0.7, "ce": 1.3})(ours, None, masks, torch.zeros(batch, dtype=torch.long))["loss"]
    expected = naive_dice_bce(naive, masks, 0.7, 1.3)
    assert_close(loss, expected)
    loss.backward()
    expected.backward()
    assert_close(ours.grad, naive.grad)


def test_a_zero_weight_term_is_not_computed_and_adds_exactly_nothing():
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    masks = masks_of("random", (2, 8, 8))
    nan_embeddings = torch.full((2, 4, 2, 2), math.nan)
    alone = CosegObjective({"ce": 1.0})(logits, None, masks)
    terms = CosegObjective({"dice": 0.0, "ce": 1.0, "jaccard": 0.0}, triplet_weight=0.0,
                           triplet=ISTripletLoss())(logits, nan_embeddings, masks)
    assert set(terms) == {"ce", "loss"}
    assert torch.equal(terms["loss"], alone["loss"])
    assert torch.equal(terms["loss"], F.binary_cross_entropy_with_logits(logits, masks.unsqueeze(1).float()))


def naive_pooled_labels(masks: torch.Tensor, stride: int, ignore: int) -> torch.Tensor:
    """Each stride × stride cell: its label if all its pixels share it, else ``ignore``."""
    b, h, w = masks.shape
    labels = torch.empty(b, h // stride, w // stride, dtype=torch.long)
    for i in range(b):
        for y in range(h // stride):
            for x in range(w // stride):
                cell = masks[i, y * stride:(y + 1) * stride, x * stride:(x + 1) * stride].unique()
                labels[i, y, x] = int(cell) if len(cell) == 1 else ignore
    return labels


@pytest.mark.parametrize("ignore_index", [255, -1])
def test_triplet_term_is_the_triplet_loss_of_the_pooled_labels_whatever_its_ignore_index(ignore_index):
    """The cells on a mask boundary get the triplet loss's own ignore index (a loss with ignore_index=-1 was given
    label 255 there and refused it: "labels must be 0/1 (or ignore_index)")."""
    logits = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    embeddings = F.normalize(torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    masks = torch.zeros(3, 16, 16, dtype=torch.long)
    masks[:, 3:11, 2:13] = 1
    masks[2] = 0  # an image without foreground
    groups = torch.tensor([4, 4, 9])
    triplet = ISTripletLoss(margin=1.0, k_per_class=8, strategy="hard", ignore_index=ignore_index)
    ours = embeddings.clone().requires_grad_(True)
    naive = embeddings.clone().requires_grad_(True)
    torch.manual_seed(2)
    terms = CosegObjective({"dice": 1.0}, triplet_weight=0.5, triplet=triplet)(logits, ours, masks, groups)
    torch.manual_seed(2)
    probabilities = F.avg_pool2d(torch.sigmoid(logits), 4).squeeze(1)
    expected = triplet(naive, naive_pooled_labels(masks, 4, ignore_index), groups=groups, probabilities=probabilities)
    assert expected > 0
    assert_close(terms["triplet"], expected)
    terms["loss"].backward()
    (0.5 * expected).backward()
    assert_close(ours.grad, naive.grad)


@pytest.mark.parametrize("ignore_index", [0, 1])
def test_a_triplet_ignore_index_that_is_a_mask_label_is_refused(ignore_index):
    with pytest.raises(ValueError, match=f"ignore_index {ignore_index} is one of the objective's labels"):
        CosegObjective({"dice": 1.0}, triplet_weight=1.0, triplet=ISTripletLoss(ignore_index=ignore_index))


@pytest.mark.parametrize("fill", ["empty", "all_foreground"])
def test_one_class_masks_give_a_zero_triplet_term_and_finite_gradients(fill):
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    embeddings = F.normalize(torch.randn(2, 4, 2, 2), dim=1).requires_grad_(True)
    terms = CosegObjective({"dice": 1.0, "ce": 1.0}, triplet_weight=1.0, triplet=ISTripletLoss(k_per_class=4))(
        logits, embeddings, masks_of(fill, (2, 8, 8)), torch.tensor([0, 0]))
    assert terms["triplet"] == 0 and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert embeddings.grad is None or torch.isfinite(embeddings.grad).all()


def test_bfloat16_autocast_terms_are_float32_and_close_to_float32():
    logits = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    embeddings = F.normalize(torch.randn(2, 8, 4, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    masks = torch.zeros(2, 16, 16, dtype=torch.long)
    masks[:, 4:12, 4:12] = 1
    objective = CosegObjective({"dice": 1.0, "ce": 0.5}, triplet_weight=1.0,
                               triplet=ISTripletLoss(k_per_class=8, strategy="random"))

    def run(dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        x, e = logits.to(dtype).detach().requires_grad_(True), embeddings.to(dtype).detach().requires_grad_(True)
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            terms = objective(x, e, masks, torch.tensor([0, 0]))
        terms["loss"].backward()
        return terms, x.grad, e.grad

    full, full_x, full_e = run(torch.float32)
    low, low_x, low_e = run(torch.bfloat16)
    assert set(low) == {"dice", "ce", "triplet", "loss"}
    for name in low:
        assert low[name].dtype == torch.float32, name
        assert_close(low[name], full[name], atol=2e-2, rtol=2e-2, msg=name)
    assert_close(low_x.float(), full_x, atol=2e-3, rtol=5e-2)
    assert_close(low_e.float(), full_e, atol=2e-2, rtol=5e-2)


@pytest.mark.parametrize("weights, triplet_weight, words", [({"dice": "1"}, 0.0, "dice '1'"),
                                                             ({"dice": 1.0, "ce": None}, 0.0, "ce None"),
                                                             ({"dice": 1.0}, "0.5", "triplet '0.5'")])
def test_weights_that_are_not_numbers_are_named(weights, triplet_weight, words):
    with pytest.raises(TypeError, match=f"^loss weights must be numbers, got {words}$"):
        CosegObjective(weights, triplet_weight, ISTripletLoss())


@pytest.mark.parametrize("values, hint", [((0, 1, 255), "there is no void \\(ignore\\) label"),
                                          ((0, 255), "e.g. masks of 0/255 need \\(masks > 0\\)")])
def test_masks_with_void_pixels_are_not_told_to_count_them_as_foreground(values, hint):
    """A 0/1 mask with void pixels (255) must not be told to binarise by (masks > 0): the void would become
    foreground; a 0/255 mask should."""
    masks = torch.tensor(values)[torch.randint(len(values), (2, 8, 8), generator=torch.Generator().manual_seed(0))]
    masks[0, 0, :len(values)] = torch.tensor(values)
    with pytest.raises(ValueError, match=f"got values \\[{', '.join(map(str, values))}\\]; {hint}"):
        CosegObjective({"dice": 1.0})(torch.zeros(2, 1, 8, 8), None, masks)
