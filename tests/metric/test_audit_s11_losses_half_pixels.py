"""IS-Triplet on float16 pixel embeddings whose values sum beyond float16's range (e.g. ReLU features of a network
run in float16): the loss summed from a counting miner's pair counts started from ``embeddings.sum() * 0``, which
was inf·0 = NaN there, so the loss was NaN while every distance was finite."""
from __future__ import annotations

import pytest
import torch

from metric.losses import is_triplet_loss
from metric.miners import BatchAllMiner, SemiHardMiner


@pytest.mark.parametrize("miner", [SemiHardMiner(margin=0.5), BatchAllMiner(margin=0.1)],
                         ids=["semi_hard", "batch_all"])
def test_counted_loss_of_float16_embeddings_with_a_large_sum_is_the_float32_loss(miner):
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, 2:6, 2:6] = 1
    values = (torch.rand(2, 64, 8, 8, generator=torch.Generator().manual_seed(0)) * 10 + 20).half()
    sampled = 2 * 2 * 16  # images × classes × k_per_class pixels of 64 values >= 20: their sum overflows float16
    assert sampled * 64 * float(values.min()) > torch.finfo(torch.float16).max
    losses, grads = [], []
    for embeddings in (values.clone().requires_grad_(True), values.float().requires_grad_(True)):
        loss = is_triplet_loss(embeddings, labels, margin=0.5, k_per_class=16, miner=miner, reduction="mean",
                               generator=torch.Generator().manual_seed(1))
        loss.backward()
        losses.append(loss.float())
        grads.append(embeddings.grad.float())
    assert losses[1] > 0
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(grads[0], grads[1], atol=1e-3, rtol=1e-2)


def test_counted_loss_without_a_triplet_is_a_zero_that_backpropagates():
    embeddings = torch.full((1, 4, 4, 4), 1e4, dtype=torch.float16, requires_grad=True)
    loss = is_triplet_loss(embeddings, torch.zeros(1, 4, 4, dtype=torch.long), k_per_class=4,
                           miner=SemiHardMiner(margin=0.5), reduction="mean")
    loss.backward()
    assert loss.item() == 0 and torch.equal(embeddings.grad, torch.zeros_like(embeddings))
