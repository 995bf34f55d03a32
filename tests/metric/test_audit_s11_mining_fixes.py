"""Settings and inputs of the miners, samplers and retrieval metrics that were taken silently or failed without naming
themselves."""
import numpy as np
import pytest
import torch

from metric.miners import AdaptiveHardnessController, BatchAllMiner, SemiHardMiner
from metric.retrieval.retrieval_metrics import retrieval_metrics
from metric.samplers import PKBatchSampler


@pytest.mark.parametrize("miner", [BatchAllMiner(margin=0.2), SemiHardMiner(0.5)], ids=["batch_all", "semi_hard"])
def test_counts_refuse_distances_of_another_batch(miner) -> None:
    """A (80, 80) matrix for 70 embeddings was read as theirs (counts of other pairs, no error) past 64 rows, and
    a (3, 3) one failed inside a broadcast."""
    x, y = torch.randn(70, 3), torch.arange(70) % 3
    with pytest.raises(ValueError, match="embeddings and the rows of distances .* got 70 and 80"):
        miner.counts(x, y, distances=torch.cdist(torch.randn(80, 3), torch.randn(80, 3)))
    with pytest.raises(ValueError, match="embeddings and the rows of distances .* got 4 and 3"):
        miner.counts(x[:4], y[:4], distances=torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"distances must have shape \(N, N\)"):
        miner.counts(x, y, distances=torch.zeros(70, 3))
    expected = miner.counts(x, y)
    given = miner.counts(x, y, distances=miner.distance.pairwise(x))
    assert all(torch.equal(a, b) for a, b in zip(given, expected))


@pytest.mark.parametrize("budget", [None, float("nan"), True, "1e9"])
def test_a_candidate_budget_that_is_no_number_of_bytes_is_refused_by_name(budget) -> None:
    """None and a string failed in a comparison naming nothing; NaN and True were taken."""
    x, y = torch.randn(10, 3), torch.arange(10) % 2
    with pytest.raises(ValueError, match="candidate_budget must be a number of bytes >= 0"):
        retrieval_metrics(x, y, with_nmi=False, candidate_budget=budget)


def test_an_infinite_gain_is_refused() -> None:
    """With gain=inf a share on the set point made a NaN step that clipped the offset to min_offset."""
    with pytest.raises(ValueError, match="gain must be a finite number > 0"):
        AdaptiveHardnessController(gain=float("inf"))
    controller = AdaptiveHardnessController(gain=1e6, initial_offset=0.3)
    assert controller.update(0.5) == 0.3


@pytest.mark.parametrize("labels", [["cat", "dog"], np.array(["cat", "dog"]), [[0], [1, 2]], [None, 1], [1j, 2j]],
                         ids=["names", "name_array", "ragged", "none", "complex"])
def test_sampler_labels_that_are_no_class_ids_are_refused_by_name(labels) -> None:
    """Class names failed with torch's 'too many dimensions 'str'', complex labels inside a sort."""
    with pytest.raises(TypeError, match="labels must be integer"):
        PKBatchSampler(labels, 1, 2)
