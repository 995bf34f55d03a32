import pytest
import torch

from metric._checks import check_class_ids, check_finite, check_labelled_embeddings, check_shape


def test_check_finite_finds_nan_inf_and_tolerates_overflowing_sums():
    check_finite(torch.randn(10))
    check_finite(torch.full((4,), 3e38))  # the sum overflows to inf, yet every value is finite
    check_finite(torch.tensor([1, 2]))  # integers are always finite
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.randn(5)
        x[2] = bad
        with pytest.raises(ValueError, match="emb holds 1 NaN/Inf"):
            check_finite(x, "emb")


def test_check_shape_messages():
    assert check_shape(torch.zeros(2, 3), ["N", "D"]) == {"N": 2, "D": 3}
    with pytest.raises(ValueError, match=r"x must have shape \(N, D\), got \(2,\)"):
        check_shape(torch.zeros(2), ["N", "D"], "x")
    with pytest.raises(ValueError, match="equal 'N' sizes"):
        check_shape(torch.zeros(2, 3), ["N", "N"], "x")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        check_shape(torch.zeros(1, 4, 2, 2), ["B", "3", "H", "W"])
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_shape([1, 2], ["N"])


def test_check_class_ids_casts_in_range_labels_and_names_the_range():
    for dtype in (torch.uint8, torch.int16, torch.int32, torch.int64):
        ids = check_class_ids(torch.tensor([0, 2, 1], dtype=dtype), 3, "one row per class")
        assert ids.dtype == torch.int64 and ids.tolist() == [0, 2, 1]
    assert check_class_ids(torch.zeros(0, dtype=torch.int32), 1, "x").dtype == torch.int64  # empty: nothing to check
    for bad, seen in ((torch.tensor([0, 3]), r"\[0, 3\]"), (torch.tensor([-1, 2]), r"\[-1, 2\]")):
        with pytest.raises(ValueError, match=r"labels must be in \[0, 3\) \(one row per class\), got " + seen):
            check_class_ids(bad, 3, "one row per class")


def test_check_labelled_embeddings_names_the_argument_at_fault():
    x, labels = torch.randn(4, 3), torch.arange(4)
    assert check_labelled_embeddings(x, labels.to(torch.uint8)) == 4
    with pytest.raises(TypeError, match="embeddings must be a floating-point tensor, got torch.int32"):
        check_labelled_embeddings(x.int(), labels)
    with pytest.raises(TypeError, match="labels must be an integer tensor, got torch.float32"):
        check_labelled_embeddings(x, labels.float())
    with pytest.raises(ValueError, match=r"labels must be on the device of embeddings \(cpu\), got meta: move it"):
        check_labelled_embeddings(x, labels.to("meta"))
    with pytest.raises(ValueError, match="embeddings and labels must have the same length, got 4 and 3"):
        check_labelled_embeddings(x, labels[:3])
