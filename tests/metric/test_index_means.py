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


def test_index_of_any_integer_dtype_gives_the_int64_means():
    # uint8/int8/int16 class labels (e.g. the labels given to TripletUpperBoundLoss.align_centroids) used to fail in
    # index_add_ ("Expected dtype int32/int64 for index")
    values = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    index = torch.tensor([1, 0, 1, 2, 2, 0])
    expected = index_means(values, index, 4)
    for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32):
        assert_close(index_means(values, index.to(dtype), 4), expected)
