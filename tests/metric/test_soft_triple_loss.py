"""SoftTriple: loops, pytorch-metric-learning, gradients, the module's centres and its parameter groups."""
from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from metric.losses.soft_triple_loss import SoftTripleLoss, center_merging_regularizer, soft_triple_loss
from metric.registry import LOSSES
from tests.helpers import assert_close, gradcheck
from tests.reference import class_losses as reference

C, K, D = 3, 4, 5
HYPER = dict(la=20.0, gamma=0.1, margin=0.01, tau=0.2)


def _inputs(n: int = 7, dtype: torch.dtype = torch.float64):
    return torch.randn(n, D, dtype=dtype), torch.randint(C, (n,)), torch.randn(D, C * K, dtype=dtype)


def test_matches_loops():
    x, labels, centers = _inputs()
    losses, reg = soft_triple_loss(x, labels, centers, C, K, **HYPER)
    expected_losses, expected_reg = reference.soft_triple_loss(x, labels, centers, C, K, **HYPER)
    assert_close(losses, torch.tensor(expected_losses, dtype=torch.float64))
    assert_close(reg, expected_reg)
    assert float(reg) > 0


@pytest.mark.parametrize("k", [1, 4])
def test_value_and_gradients_match_pytorch_metric_learning(k):
    # PML has no centre regulariser (tau); its fc (D, C·K) has our layout and is normalised the same way.
    x, labels, _ = _inputs(n=9)
    ours = SoftTripleLoss(C, D, centers_per_class=k, la=15.0, gamma=0.2, margin=0.05, tau=0.0).double()
    pml = pml_losses.SoftTripleLoss(C, D, centers_per_class=k, la=15.0, gamma=0.2, margin=0.05).double()
    pml.fc.data.copy_(ours.centers.data)
    x_ours, x_pml = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    loss_ours, loss_pml = ours(x_ours, labels), pml(x_pml, labels)
    assert_close(loss_ours, loss_pml)
    loss_ours.backward()
    loss_pml.backward()
    assert_close(x_ours.grad, x_pml.grad)
    assert_close(ours.centers.grad, pml.fc.grad)


def test_gradcheck():
    x, labels, centers = _inputs(n=5)
    assert gradcheck(lambda e, w: sum(t.sum() for t in soft_triple_loss(e, labels, w, C, K, **HYPER)), [x, centers])


def test_regularizer_is_zero_for_one_centre_and_small_for_merged_centres():
    assert float(center_merging_regularizer(torch.randn(D, C), C, 1)) == 0.0
    merged = torch.randn(D, C).repeat_interleave(K, dim=1)  # K equal centres per class
    spread = torch.randn(D, C * K)
    assert float(center_merging_regularizer(merged, C, K)) < 0.01 < float(center_merging_regularizer(spread, C, K))


def test_regularizer_of_merged_centres_under_autocast_keeps_a_finite_gradient():
    # bfloat16 rounded 2 + ε − 2·cos to 0 (or below) for equal centres: sqrt's gradient there is infinite
    merged = torch.randn(D, C).repeat_interleave(K, dim=1).requires_grad_(True)
    expected = center_merging_regularizer(merged, C, K)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = center_merging_regularizer(merged, C, K)
    assert_close(value, expected)
    assert torch.isfinite(torch.autograd.grad(value, merged)[0]).all()


def test_embeddings_of_another_dtype_than_the_centres():
    loss = SoftTripleLoss(C, D, centers_per_class=K)  # float32 centres
    x, labels, _ = _inputs(dtype=torch.float64)
    value = loss(x, labels)
    assert value.dtype == torch.float64
    assert_close(value, loss.double()(x, labels), rtol=1e-6, atol=1e-6)  # the regulariser of float32 centres


def test_module_matches_function_and_adds_the_regularizer(dtype):
    loss = LOSSES.create("soft_triple", num_classes=C, embedding_size=D, centers_per_class=K).to(dtype)
    x, labels, _ = _inputs(dtype=dtype)
    losses, reg = soft_triple_loss(x, labels, loss.centers, C, K)
    assert_close(loss(x, labels), losses.mean() + reg)
    assert [p.shape for p in loss.parameters()] == [(D, C * K)]


def test_param_groups_give_the_centres_their_learning_rate():
    loss = SoftTripleLoss(C, D, centers_per_class=K)
    model = torch.nn.Linear(4, D)
    optimizer = torch.optim.SGD([{"params": model.parameters()}, *loss.param_groups()], lr=1e-4)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, 1e-2]
    assert optimizer.param_groups[1]["params"][0] is loss.centers


def _reference_mean(loss: SoftTripleLoss, x: torch.Tensor, labels: torch.Tensor) -> float:
    losses, reg = reference.soft_triple_loss(x.detach(), labels, loss.centers.detach(), C, K, la=loss.la,
                                             gamma=loss.gamma, margin=loss.margin, tau=loss.tau)
    return sum(losses) / len(losses) + reg


def test_edge_cases():
    loss = SoftTripleLoss(C, D, centers_per_class=K).double()
    x = torch.randn(4, D, dtype=torch.float64, requires_grad=True)
    labels = torch.zeros(4, dtype=torch.long)
    value = loss(x, labels)  # all one class: still a loss against the other classes
    value.backward()
    assert_close(value, _reference_mean(loss, x, labels))
    assert float(x.grad.abs().sum()) > 0
    one, label = torch.randn(1, D, dtype=torch.float64), torch.tensor([2])
    assert_close(loss(one, label), _reference_mean(loss, one, label))  # one sample
    with pytest.raises(ValueError, match="NaN"):
        loss(torch.full((2, D), float("nan")), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        loss(torch.randn(2, D), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="centers must have shape"):
        soft_triple_loss(torch.randn(2, D + 1), torch.tensor([0, 1]), torch.randn(D, C * K), C, K)
    # the module's own centres are no argument of its caller: the message was "centers must have shape (6, 12)"
    with pytest.raises(ValueError, match=r"embeddings must have shape \(N, 5\) \(the loss's embedding_size\), "
                                         r"got \(2, 6\)"):
        loss(torch.randn(2, D + 1, dtype=torch.float64), torch.tensor([0, 1]))


@pytest.mark.parametrize("option, value, rule", [("la", 0.0, "> 0"), ("la", -20.0, "> 0"), ("gamma", 0.0, "> 0"),
                                                 ("tau", -0.2, ">= 0"), ("margin", -0.01, ">= 0"),
                                                 ("la", float("nan"), "> 0")])
def test_settings_that_would_reverse_a_term_are_refused(option, value, rule):
    # la < 0 rewarded the wrong class's similarity and tau < 0 merged the centres: both trained without a word
    with pytest.raises(ValueError, match=f"{option} must be {rule}"):
        SoftTripleLoss(C, D, **{option: value})
    SoftTripleLoss(C, D, tau=0.0, margin=0.0)  # no regulariser, no margin: allowed


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_labels_of_any_integer_dtype_give_the_int64_value(dtype):
    x, labels, centers = _inputs()
    losses = soft_triple_loss(x, labels.to(dtype), centers, C, K, **HYPER)[0]
    assert_close(losses, soft_triple_loss(x, labels, centers, C, K, **HYPER)[0])
    module = SoftTripleLoss(C, D, centers_per_class=K)
    assert_close(module(x.float(), labels.to(dtype)), module(x.float(), labels))  # the module too
