import torch
from torch.testing import assert_close

from metric.index_means import index_means


def test_index_means_matches_loops_and_leaves_empty_indices_at_zero():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(11, 4, generator=g, dtype=torch.float64)
    index = torch.tensor([0, 2, 2, 0, 4, 4, 4, 0, 2, 4, 0])
    expected = torch.zeros(6, 4, dtype=torch.float64)
    for k in range(6):
        rows = [values[i] for i in range(11) if int(index[i]) == k]
        if rows:
            expected[k] = sum(rows) / len(rows)
    assert_close(index_means(values, index, 6), expected)
